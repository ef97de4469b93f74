"""The shell launchers run the project's .venv python unless PYTHON is set,
so README's commands work after `make install` without activating it."""
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

TOOLS = Path(__file__).parents[2] / 'tools'
SCRIPTS = {
    'dist_train.sh': ['cfg.py', '2'],
    'dist_test.sh': ['cfg.py', 'ckpt.pth', '2'],
    'slurm_train.sh': ['part', 'job', 'cfg.py', 'work'],
    'slurm_test.sh': ['part', 'job', 'cfg.py', 'ckpt.pth'],
}


def _fake(path: Path, name: str) -> None:
    """An executable that records which interpreter ran and its arguments."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "{name} $*"\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _fake_srun(bin_dir: Path) -> None:
    # srun -p PARTITION --opt=... PYTHON -u SCRIPT ARGS: run the command.
    srun = bin_dir / 'srun'
    srun.write_text('#!/bin/sh\n'
                    'shift 2\n'
                    'while [ "${1#--}" != "$1" ]; do shift; done\n'
                    'exec "$@"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)


def _run(tmp_path: Path, script: str, with_venv: bool, python=None) -> str:
    project = tmp_path / 'project'
    (project / 'tools').mkdir(parents=True)
    shutil.copy(TOOLS / script, project / 'tools' / script)
    bin_dir = tmp_path / 'bin'
    _fake(bin_dir / 'python', 'path-python')
    _fake_srun(bin_dir)
    if with_venv:
        _fake(project / '.venv' / 'bin' / 'python', 'venv-python')
    env = {
        k: v
        for k, v in os.environ.items() if k not in ('PYTHON', 'SRUN_ARGS')
    }
    env['PATH'] = f'{bin_dir}{os.pathsep}{env["PATH"]}'
    if python is not None:
        env['PYTHON'] = python
    return subprocess.run(['bash', f'tools/{script}', *SCRIPTS[script]],
                          cwd=project,
                          env=env,
                          capture_output=True,
                          text=True,
                          check=True).stdout


@pytest.mark.parametrize('script', sorted(SCRIPTS))
def test_launcher_prefers_the_project_venv(tmp_path, script):
    assert _run(tmp_path, script, with_venv=True).startswith('venv-python ')


@pytest.mark.parametrize('script', sorted(SCRIPTS))
def test_launcher_falls_back_to_python_on_path(tmp_path, script):
    assert _run(tmp_path, script, with_venv=False).startswith('path-python ')


@pytest.mark.parametrize('script', sorted(SCRIPTS))
def test_python_variable_wins(tmp_path, script):
    other = tmp_path / 'other' / 'python'
    _fake(other, 'other-python')
    out = _run(tmp_path, script, with_venv=True, python=str(other))
    assert out.startswith('other-python ')
