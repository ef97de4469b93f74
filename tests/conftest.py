"""Shared set-up: mmdet's scope and a tiny synthetic YouTube-VIS dataset."""
import pytest
from mmdet.utils import register_all_modules

import mmttsrn  # noqa: F401  (registers the components)
from mmttsrn.datasets import make_synthetic_vis

# Tests build components by name the way configs do, in mmdet's scope.
register_all_modules(init_default_scope=True)


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


# Slow tests in files whose owners have not marked them yet: the learning
# test trains the quickstart model for 150 iterations. Better as
# `pytestmark = pytest.mark.slow` in the file itself; then drop it here.
SLOW_FILES = ('tests/test_models/test_vis/test_ttsrn_learns.py', )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.split('::')[0] in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
