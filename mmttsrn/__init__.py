"""TT-SRN video instance segmentation, as an extension of MMDetection.

Importing the package registers its components into mmdet's registries, so a
config reaches them with ``custom_imports=dict(imports=['mmttsrn'])``.
"""
from . import (datasets, engine, evaluation, models,  # noqa: F401
               visualization)
from .version import __version__

__all__ = ['__version__']
