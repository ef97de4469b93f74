"""Shared set-up: mmdet's scope and a tiny synthetic YouTube-VIS dataset."""
import os

import pytest
import torch
from mmdet.utils import register_all_modules

import mmttsrn  # noqa: F401  (registers the components)
from mmttsrn.datasets import make_synthetic_vis

# Tests build components by name the way configs do, in mmdet's scope.
register_all_modules(init_default_scope=True)

# `make test` runs one pytest-xdist worker per core: one thread each, in the
# worker and in the processes its tests start, so that they do not
# oversubscribe the cores.
if os.environ.get('PYTEST_XDIST_WORKER'):
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory):
    """Root of a tiny synthetic dataset (8 train / 3 valid videos)."""
    root = tmp_path_factory.mktemp('synthetic_vis')
    make_synthetic_vis(
        str(root),
        num_train_videos=8,
        num_val_videos=3,
        seed=0,
        frames_range=(3, 6),
        size_range=(32, 64))
    return root
