"""Runner checkpoints: resume and load_from with torch's safe loader."""
import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from torch.utils.data import Dataset

import mmttsrn  # noqa: F401  (allows mmengine's checkpoint types)


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
