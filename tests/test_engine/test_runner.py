"""TTSRNRunner: DataLoader workers end with the process that started them."""
import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from mmengine.dataset.utils import worker_init_fn
from torch.utils.data import DataLoader, Dataset

from mmttsrn.engine import TTSRNRunner, die_with_parent

ROOT = Path(__file__).parents[2]
linux_only = pytest.mark.skipif(
    not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux')


def _record_init(worker_id):
    os.environ['INIT_RAN'] = str(worker_id)


class _WorkerState(Dataset):

    def __len__(self):
        return 2

    def __getitem__(self, idx):
        sig = ctypes.c_int(0)
        ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # GET
        return torch.tensor([sig.value, int(os.environ['INIT_RAN'])])


@linux_only
def test_workers_get_a_parent_death_signal_and_keep_their_init():
    loader = die_with_parent(
        DataLoader(_WorkerState(), num_workers=1, worker_init_fn=_record_init))
    for batch in loader:
        assert batch.tolist() == [[signal.SIGKILL, 0]]
    # Without workers there is nothing to change.
    plain = DataLoader(_WorkerState())
    assert die_with_parent(plain).worker_init_fn is None


def test_runner_builds_loaders_with_it():
    loader = TTSRNRunner.build_dataloader(
        dict(
            dataset=_WorkerState(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=1,
            num_workers=1),
        seed=0)
    assert loader.worker_init_fn.func.__name__ == '_worker_init'
    # mmengine's seeding of each worker is still there, called after it.
    assert loader.worker_init_fn.args[1].func is worker_init_fn


TRAIN_SCRIPT = '''
import os, sys, time
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch.utils.data import Dataset

from mmttsrn.engine import TTSRNRunner

PID_FILE = sys.argv[1]


@MODELS.register_module()
class Toy(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, mode='tensor'):
        return dict(loss=self.linear(torch.stack(inputs)).sum())


class Slow(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, idx):
        with open(PID_FILE, 'a') as f:
            f.write(f'{os.getpid()}\\n')
        time.sleep(300)  # busy: torch's own watchdog never looks
        return dict(inputs=torch.zeros(2))


TTSRNRunner(
    model=dict(type='Toy'),
    work_dir=sys.argv[2],
    train_dataloader=dict(
        dataset=Slow(), sampler=dict(type='DefaultSampler'), batch_size=1,
        num_workers=1, persistent_workers=True),
    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
    train_cfg=dict(by_epoch=True, max_epochs=1)).train()
'''


def _alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in 'ZX'  # a zombie has ended


@linux_only
@pytest.mark.slow
def test_sigkilled_training_takes_its_workers_along(tmp_path):
    pid_file = tmp_path / 'worker.pid'
    script = tmp_path / 'train.py'
    script.write_text(textwrap.dedent(TRAIN_SCRIPT))
    proc = subprocess.Popen(
        [sys.executable,
         str(script),
         str(pid_file),
         str(tmp_path / 'work')],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (pid_file.exists() and pid_file.read_text()):
            assert proc.poll() is None, 'training ended early'
            assert time.time() < deadline, 'no worker started'
            time.sleep(0.2)
        worker = int(pid_file.read_text().split()[0])
        assert worker != proc.pid and _alive(worker)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 10
    while _alive(worker) and time.time() < deadline:
        time.sleep(0.1)
    if _alive(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail('the DataLoader worker outlived its SIGKILLed parent')
