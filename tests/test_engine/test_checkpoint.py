"""Runner checkpoints: resume and load_from with torch's safe loader."""
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from torch.utils.data import Dataset

import mmttsrn  # noqa: F401  (allows mmengine's checkpoint types)
from mmttsrn.engine import UnsafeCheckpointError, load_pretrained_file


@MODELS.register_module(force=True)
class _ToyRegressor(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
        out = self.linear(inputs)
        if mode == 'loss':
            targets = torch.stack(targets) if isinstance(targets,
                                                         list) else targets
            return dict(loss=((out - targets)**2).mean())
        return out


class _ToyData(Dataset):

    def __len__(self):
        return 16

    def __getitem__(self, idx):
        gen = torch.Generator().manual_seed(idx)
        x = torch.randn(4, generator=gen)
        return dict(inputs=x, targets=x.sum(0, keepdim=True))


def _runner(work_dir, max_iters, **kwargs):
    return Runner(
        model=dict(type='_ToyRegressor'),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=_ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=4,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-2)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        experiment_name=f'toy_{max_iters}_{id(kwargs)}',
        default_scope='mmdet',
        **kwargs)


def _adam_state(runner):
    state = runner.optim_wrapper.optimizer.state
    return state[runner.model.linear.weight]['exp_avg'].clone()


def test_resume_continues_with_optimizer_state(tmp_path):
    first = _runner(tmp_path, max_iters=2)
    first.train()
    ckpt = tmp_path / 'iter_2.pth'
    assert ckpt.is_file()
    saved_state = _adam_state(first)

    resumed = _runner(tmp_path, max_iters=3, resume=True,
                      load_from=str(ckpt))
    resumed.load_or_resume()
    assert resumed.iter == 2
    torch.testing.assert_close(_adam_state(resumed), saved_state)
    resumed.train()
    assert resumed.iter == 3


def test_load_from_loads_weights(tmp_path):
    first = _runner(tmp_path, max_iters=2)
    first.train()
    weights = first.model.linear.weight.detach().clone()

    fresh = _runner(tmp_path / 'fresh', max_iters=2,
                    load_from=str(tmp_path / 'iter_2.pth'))
    assert not torch.equal(fresh.model.linear.weight, weights)
    fresh.load_or_resume()
    torch.testing.assert_close(fresh.model.linear.weight, weights)


class _Evil:

    def __reduce__(self):
        return (print, ('executed',))


def test_arbitrary_pickles_are_still_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, payload=_Evil()), path)
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(str(path))


def _pickled_globals(path):
    """The GLOBAL names in a torch.save file's data.pkl."""
    import pickletools
    import zipfile
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith('data.pkl'))
        ops = pickletools.genops(zf.read(name))
        return {arg for op, arg, _ in ops if op.name == 'GLOBAL'}


def test_real_checkpoints_use_getattr_and_still_load(tmp_path):
    _runner(tmp_path, max_iters=2).train()
    ckpt = tmp_path / 'iter_2.pth'
    # HistoryBuffer's statistics methods go through the restricted getattr.
    assert '__builtin__ getattr' in _pickled_globals(ckpt)
    checkpoint = _load_checkpoint(str(ckpt))
    assert checkpoint['meta']['iter'] == 2
    assert 'message_hub' in checkpoint


class _Getattr:
    """Pickles as getattr(obj, name)."""

    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return (getattr, (self.obj, self.name))


@pytest.mark.parametrize(
    'payload',
    [
        # a module's globals (os among them, for most modules)
        _Getattr(_Getattr(HistoryBuffer, '__init__'), '__globals__'),
        # an attribute of an allowed class that is no statistics method
        _Getattr(HistoryBuffer, '__init__'),
        _Getattr(torch.Tensor, '__class__'),
    ])
def test_getattr_reaches_only_history_buffer_statistics(tmp_path, payload):
    path = tmp_path / 'crafted.pth'
    torch.save(dict(state_dict={}, meta=payload), path)
    assert '__builtin__ getattr' in _pickled_globals(path)
    with pytest.raises(pickle.UnpicklingError,
                       match=r'crafted.pth .*getattr\(.* is not allowed'):
        _load_checkpoint(str(path))


def test_getattr_of_a_blocked_module_is_refused(tmp_path):
    # getattr(os, 'system') as a pickle would spell it.
    path = tmp_path / 'os_system.pth'
    torch.save(dict(state_dict={}), path)
    with zipfile.ZipFile(path) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    name = next(n for n in files if n.endswith('data.pkl'))
    files[name] = (b'\x80\x02c__builtin__\ngetattr\ncos\nsystem\n'
                   b'X\x06\x00\x00\x00systemq\x00\x86R.')
    with zipfile.ZipFile(path, 'w') as zf:
        for n, data in files.items():
            zf.writestr(n, data)
    with pytest.raises(pickle.UnpicklingError, match='os_system.pth'):
        _load_checkpoint(str(path))


@pytest.mark.parametrize('content', [
    b'hello, this is a text file\n',
    bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
    b'\x80\x02garbage that starts like a pickle',
    b'',
])
def test_not_a_checkpoint_file(tmp_path, content):
    path = tmp_path / 'junk.pth'
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f'not a checkpoint file: {path}'):
        _load_checkpoint(str(path))
    with pytest.raises(ValueError, match=f'not a checkpoint file: {path}'):
        load_pretrained_file(str(path), 'Twins')


def test_zip_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / 'archive.pth'
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('readme.txt', 'not a checkpoint')
    with pytest.raises(ValueError, match=f'not a checkpoint file: {path}'):
        _load_checkpoint(str(path))


class _Touch:
    """A payload with a visible effect: it creates a file when unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path), ))


def test_pretrained_files_are_loaded_safely_unless_asked(tmp_path):
    marker = tmp_path / 'payload_ran'
    path = tmp_path / 'pretrained.pth'
    torch.save(dict(model={'w': torch.ones(1)}, args=_Touch(marker)), path)
    with pytest.raises(UnsafeCheckpointError,
                       match=r'pretrained.pth .*--unsafe-load'):
        load_pretrained_file(str(path), 'Twins')
    assert not marker.exists()
    # Only an explicit choice unpickles it.
    checkpoint = load_pretrained_file(str(path), 'Twins', allow_unsafe=True)
    assert marker.exists()
    assert torch.equal(checkpoint['model']['w'], torch.ones(1))


def test_plain_pretrained_state_dict_loads(tmp_path):
    path = tmp_path / 'plain.pth'
    torch.save({'model': {'w': torch.zeros(2)}}, path)
    assert torch.equal(
        load_pretrained_file(str(path), 'Twins')['model']['w'],
        torch.zeros(2))


def test_loads_where_no_history_buffer_was_made(tmp_path, monkeypatch):
    _runner(tmp_path, max_iters=2).train()
    # HistoryBuffer registers its statistics when the first buffer is made.
    monkeypatch.setattr(HistoryBuffer, '_statistics_methods', {})
    checkpoint = _load_checkpoint(str(tmp_path / 'iter_2.pth'))
    assert checkpoint['meta']['iter'] == 2
