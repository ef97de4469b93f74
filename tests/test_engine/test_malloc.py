"""keep_freed_memory: a freed large tensor's memory is reused, and
TTSRNRunner turns it on for CPU runs when env_cfg asks for it."""
import json
import platform
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel

import mmttsrn.engine.runner as runner_module
from mmttsrn.engine import TTSRNRunner

glibc_only = pytest.mark.skipif(
    platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc',
    reason='mallopt is glibc')

# Page faults of each of eight 64 MiB tensors, made and freed one after the
# other; in a fresh process, so that the test process's allocator is not
# changed.
FAULTS = '''
import json, resource, sys
import torch
from mmttsrn.engine import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == 'keep' else None
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(16 * 2**20)  # 64 MiB, freed at once
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(dict(kept=kept, faults=faults)))
'''


def _faults(mode):
    out = subprocess.run([sys.executable, '-c',
                          textwrap.dedent(FAULTS), mode],
                         capture_output=True,
                         text=True,
                         check=True).stdout
    return json.loads(out.splitlines()[-1])


@glibc_only
def test_freed_memory_is_reused_without_page_faults():
    default = _faults('default')['faults']
    kept = _faults('keep')
    assert kept['kept'] is True
    # 64 MiB is 16384 pages of 4 KiB: by default every tensor faults them in.
    assert min(default) > 8000
    # Kept: the heap grows for the first one or two (small Python objects
    # may take the start of a freed block), then the blocks are reused.
    assert max(kept['faults'][4:]) < 1000


class _Toy(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return self.linear(inputs)


def _cuda(monkeypatch, available):
    """Pretend CUDA is or is not available. When it is, the first runner of a
    process builds mmengine's logger, which looks its device up in
    CUDA_VISIBLE_DEVICES (or among ``device_count()`` devices, none here)."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: available)
    if available:
        monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '0')


def _runner(tmp_path, **env_cfg):
    # mmdet's scope, as the configs: a runner makes its scope the current
    # one, and later tests in this process build mmdet-registered modules.
    return TTSRNRunner(
        model=_Toy(),
        work_dir=str(tmp_path),
        env_cfg=env_cfg,
        default_scope='mmdet')


@pytest.mark.parametrize('cuda,env_cfg,called', [
    (False, {}, False),
    (False, dict(keep_freed_memory=True), True),
    (False, dict(keep_freed_memory=False), False),
    (True, dict(keep_freed_memory=True), False),
])
def test_runner_keeps_freed_memory_on_cpu_when_asked(tmp_path, monkeypatch,
                                                     cuda, env_cfg, called):
    calls = []
    monkeypatch.setattr(runner_module, 'keep_freed_memory',
                        lambda: calls.append(1) or True)
    _cuda(monkeypatch, cuda)
    _runner(tmp_path, **env_cfg)
    assert bool(calls) == called


@pytest.mark.parametrize('cuda', [False, True])
def test_test_setting_keeps_freed_memory_from_test_on(tmp_path, monkeypatch,
                                                      cuda):
    """'test': not at set-up (training keeps the default malloc), but when
    ``test()`` starts, before its DataLoader exists; never with CUDA."""
    calls = []
    monkeypatch.setattr(runner_module, 'keep_freed_memory',
                        lambda: calls.append(1) or True)
    _cuda(monkeypatch, cuda)
    monkeypatch.setattr(runner_module.Runner, 'test', lambda self: 'tested')
    runner = _runner(tmp_path, keep_freed_memory='test')
    assert calls == []
    assert runner.test() == 'tested'
    assert calls == ([] if cuda else [1])


@pytest.mark.parametrize('bad', ['yes', 1, None])
def test_runner_rejects_another_setting(tmp_path, monkeypatch, bad):
    monkeypatch.setattr(runner_module, 'keep_freed_memory', lambda: True)
    with pytest.raises(TypeError, match='keep_freed_memory'):
        _runner(tmp_path, keep_freed_memory=bad)
