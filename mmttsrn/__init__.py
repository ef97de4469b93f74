"""TT-SRN video instance segmentation, as an extension of MMDetection.

Importing the package registers its components into mmdet's registries, so a
config reaches them with ``custom_imports=dict(imports=['mmttsrn'])``, and
applies the version-guarded fixes of :mod:`mmttsrn.compat` (among them the
safe checkpoint loader that `load_from` and `--resume` need on torch >= 2.6).
"""
from . import datasets, engine, evaluation, models, visualization  # noqa: F401
from .compat import apply_patches
from .version import __version__

apply_patches()

__all__ = ['__version__']
