"""mmttsrn.compat: each patch applies only to the versions it was made for.
"""
import gc
import socket
import weakref

import mmdet
import mmengine
import numpy as np
import pytest
import torch
from mmdet.evaluation.functional import ytviseval
from mmengine.config import Config
from mmengine.runner.checkpoint import CheckpointLoader

from mmttsrn import compat
from mmttsrn.engine import load_local_checkpoint


def test_patches_are_applied_to_the_tested_versions():
    assert mmdet.__version__ == compat.TESTED_MMDET
    assert mmengine.__version__ == compat.TESTED_MMENGINE
    assert compat.PATCH_STATUS['mmengine_safe_checkpoint'] == 'applied'
    assert CheckpointLoader._schemes[''] is load_local_checkpoint
    if not hasattr(np, 'float'):
        assert compat.PATCH_STATUS['ytviseval_numpy'] == 'applied'
        assert ytviseval.np.float is float
        assert not hasattr(np, 'float')  # numpy itself is left alone


@pytest.fixture
def restore():
    """Undo what a test does to the patched modules."""
    schemes = dict(CheckpointLoader._schemes)
    ytviseval_np = ytviseval.np
    status = dict(compat.PATCH_STATUS)
    yield
    CheckpointLoader._schemes.clear()
    CheckpointLoader._schemes.update(schemes)
    ytviseval.np = ytviseval_np
    compat.PATCH_STATUS.clear()
    compat.PATCH_STATUS.update(status)


def test_newer_releases_are_not_patched_blindly(monkeypatch, restore):
    sentinel = object()
    CheckpointLoader._schemes[''] = sentinel
    ytviseval.np = np
    monkeypatch.setattr(mmengine, '__version__', '0.11.0')
    monkeypatch.setattr(mmdet, '__version__', '3.4.0')
    monkeypatch.delattr(np, 'float', raising=False)
    compat.apply_patches()
    assert CheckpointLoader._schemes[''] is sentinel
    assert ytviseval.np is np
    assert compat.PATCH_STATUS['mmengine_safe_checkpoint'] == \
        'skipped (mmengine 0.11.0 > tested 0.10.7)'
    assert compat.PATCH_STATUS['ytviseval_numpy'] == \
        'skipped (mmdet 3.4.0 > tested 3.3.0)'

    cfg = Config(dict(launcher='pytorch'))
    monkeypatch.setattr(compat.torch.cuda, 'is_available', lambda: False)
    compat.init_cpu_process_group(cfg)
    assert 'model_wrapper_cfg' not in cfg
    assert not compat.dist.is_initialized()


def test_no_process_group_without_torchrun():
    cfg = Config(dict(launcher='none'))
    compat.init_cpu_process_group(cfg)
    assert 'model_wrapper_cfg' not in cfg
    assert not compat.dist.is_initialized()


def test_config_loading_starts_no_process_group(tmp_path):
    from mmttsrn.utils import load_tool_config
    config = tmp_path / 'cfg.py'
    config.write_text('x = 1\n')
    cfg = load_tool_config(str(config), launcher='pytorch')
    assert cfg.launcher == 'pytorch'
    assert not compat.dist.is_initialized()


def test_cpu_process_group_is_closed_with_what_holds_it(monkeypatch, restore):
    """The exit handler frees the run's objects (here a DDP wrapper in a
    reference cycle, as mmengine's runner leaves it) before it destroys the
    group: freed at interpreter teardown instead, gloo can abort the
    process after a finished run."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    for key, value in dict(
            MASTER_ADDR='127.0.0.1',
            MASTER_PORT=str(port),
            RANK='0',
            LOCAL_RANK='0',
            WORLD_SIZE='1').items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(compat.torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(compat.atexit, 'register', lambda fn: None)
    gc.disable()
    try:
        compat.init_cpu_process_group(Config(dict(launcher='pytorch')))
        assert compat.dist.is_initialized()
        cycle = dict(ddp=torch.nn.parallel.DistributedDataParallel(
            torch.nn.Linear(2, 2)))
        cycle['self'] = cycle
        ddp = weakref.ref(cycle['ddp'])
        del cycle
        assert ddp() is not None
        compat._close_process_group()
        assert ddp() is None
        assert not compat.dist.is_initialized()
    finally:
        gc.enable()
        if compat.dist.is_initialized():
            compat.dist.destroy_process_group()
