import subprocess
import sys

from mmttsrn.utils import collect_env


def test_collect_env_reports_the_stack():
    env = collect_env()
    for key in ('Python', 'PyTorch', 'CUDA available', 'MMEngine', 'MMCV',
                'MMCV ops', 'MMDetection', 'timm', 'mmttsrn'):
        assert key in env, key
    assert env['MMCV ops'] == 'compiled'


def test_collect_env_runs_as_a_module():
    out = subprocess.run(
        [sys.executable, '-m', 'mmttsrn.utils.collect_env'],
        capture_output=True,
        text=True,
        check=True).stdout
    assert 'MMDetection: 3.3.0' in out
    assert 'PyTorch compiling details' not in out


def test_collect_env_reports_the_compat_patches():
    env = collect_env()
    assert env['compat mmengine_safe_checkpoint'] == 'applied'
