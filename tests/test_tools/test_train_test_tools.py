"""tools/train.py, tools/test.py and the dist scripts on a tiny synthetic set.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pycocotools import mask as mask_utils

# Trainings and tests run as processes: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
BASE_CONFIG = ROOT / 'configs' / 'ttsrn' / 'ttsrn_synthetic.py'


@pytest.fixture(scope='module')
def tiny_config(tmp_path_factory, synthetic_root):
    """A config inheriting the quickstart one, shrunk for a 2-iteration run.
    """
    path = tmp_path_factory.mktemp('cfg') / 'tiny.py'
    path.write_text(f"""
_base_ = [{str(BASE_CONFIG)!r}]
data_root = {str(synthetic_root) + '/'!r}
model = dict(
    backbone=dict(embed_dims=(8, 16, 32, 64), num_heads=(1, 1, 2, 4)),
    track_head=dict(
        in_channels=[8, 16, 32, 64], embed_dims=48,
        input_proj_norm=dict(type='GN', num_groups=8),
        transformer=dict(num_heads=4, num_encoder_layers=1,
                         num_decoder_layers=2, feedforward_channels=32),
        mask_head=dict(num_heads=4, conv_channels=(52, 24, 12, 8, 8),
                       num_groups=4)))
train_cfg = dict(max_epochs=1, val_interval=1)
train_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, indices=2))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
default_hooks = dict(checkpoint=dict(interval=1))
randomness = dict(seed=0)
""")
    return path


def _run(*cmd, env=None):
    proc = subprocess.run([str(c) for c in cmd],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          env={
                              **os.environ,
                              **(env or {})
                          },
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _check_results(path, ann_file):
    results = json.loads(Path(path).read_text())
    ann = json.loads(Path(ann_file).read_text())
    videos = {v['id']: v for v in ann['videos']}
    cat_ids = {c['id'] for c in ann['categories']}
    # A video whose every track has an empty mask has no entry.
    assert results and {r['video_id'] for r in results} <= set(videos)
    for res in results:
        video = videos[res['video_id']]
        assert res['category_id'] in cat_ids
        assert 0 <= res['score'] <= 1
        assert len(res['segmentations']) == len(video['file_names'])
        for rle in res['segmentations']:
            if rle is not None:
                assert rle['size'] == [video['height'], video['width']]
                mask_utils.decode(
                    dict(size=rle['size'], counts=rle['counts'].encode()))


def test_train_then_test_writes_a_valid_submission(tiny_config, tmp_path,
                                                   synthetic_root):
    work_dir = tmp_path / 'work'
    out = _run(sys.executable, 'tools/train.py', tiny_config, '--work-dir',
               work_dir)
    assert 'Epoch(train)' in out or (work_dir / 'epoch_1.pth').is_file()
    ckpt = work_dir / 'epoch_1.pth'
    assert ckpt.is_file()

    out = _run(sys.executable, 'tools/test.py', tiny_config, ckpt,
               '--work-dir', work_dir)
    assert 'youtube_vis/segm_mAP' in out
    assert (work_dir / 'results.submission_file.zip').is_file()
    _check_results(work_dir / 'results.json',
                   synthetic_root / 'annotations' / 'valid.json')

    # bf16 autocast (the CPU's only autocast dtype) through TestLoop.fp16.
    bf16_dir = tmp_path / 'bf16'
    out = _run(sys.executable, 'tools/test.py', tiny_config, ckpt,
               '--work-dir', bf16_dir, '--dtype', 'bf16')
    assert 'youtube_vis/segm_mAP' in out
    assert 'fp16=True' in ''.join(
        p.read_text() for p in bf16_dir.rglob('*.py'))
    _check_results(bf16_dir / 'results.json',
                   synthetic_root / 'annotations' / 'valid.json')


def test_fp16_needs_a_gpu(tiny_config, tmp_path):
    if torch.cuda.is_available():
        pytest.skip('has a GPU')
    proc = subprocess.run(
        [sys.executable, 'tools/test.py', tiny_config,
         str(tmp_path / 'missing.pth'), '--dtype', 'fp16'],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert '--dtype fp16 needs a GPU' in proc.stderr


def test_format_only_on_the_unannotated_split(tiny_config, tmp_path,
                                              synthetic_root):
    work_dir = tmp_path / 'work'
    _run(sys.executable, 'tools/train.py', tiny_config, '--work-dir',
         work_dir, '--cfg-options', 'train_cfg.val_interval=2')
    out = _run(
        sys.executable, 'tools/test.py', tiny_config,
        work_dir / 'epoch_1.pth', '--work-dir', work_dir, '--format-only',
        '--cfg-options',
        'test_dataloader.dataset.ann_file=annotations/valid_unannotated.json')
    assert 'segm_mAP' not in out
    _check_results(work_dir / 'results.json',
                   synthetic_root / 'annotations' / 'valid.json')


def test_resume_continues_training(tiny_config, tmp_path):
    work_dir = tmp_path / 'work'
    _run(sys.executable, 'tools/train.py', tiny_config, '--work-dir',
         work_dir, '--cfg-options', 'train_cfg.val_interval=5')
    out = _run(sys.executable, 'tools/train.py', tiny_config, '--work-dir',
               work_dir, '--resume', '--cfg-options',
               'train_cfg.max_epochs=2', 'train_cfg.val_interval=5')
    assert 'resumed epoch: 1' in out
    assert (work_dir / 'epoch_2.pth').is_file()


def test_dist_train_and_test_on_cpu(tiny_config, tmp_path, synthetic_root):
    work_dir = tmp_path / 'dist'
    env = dict(PYTHON=sys.executable, PORT='29611')
    _run('bash', 'tools/dist_train.sh', tiny_config, 2, '--work-dir',
         work_dir, '--cfg-options', 'train_cfg.val_interval=5', env=env)
    ckpt = work_dir / 'epoch_1.pth'
    assert ckpt.is_file()
    out = _run('bash', 'tools/dist_test.sh', tiny_config, ckpt, 2,
               '--work-dir', work_dir, env=env)
    assert 'youtube_vis/segm_mAP' in out
    _check_results(work_dir / 'results.json',
                   synthetic_root / 'annotations' / 'valid.json')


@pytest.fixture(scope='module')
def resumed_in_empty_dir(tiny_config, tmp_path_factory):
    """``--resume`` where there is no checkpoint yet (a requeued job's first
    start): trains from scratch, and says so."""
    work_dir = tmp_path_factory.mktemp('requeued')
    out = _run(sys.executable, 'tools/train.py', tiny_config, '--work-dir',
               work_dir, '--resume', '--cfg-options',
               'train_cfg.val_interval=5')
    return work_dir, out


def test_resume_without_a_checkpoint_says_so(resumed_in_empty_dir):
    work_dir, out = resumed_in_empty_dir
    assert (f'--resume: no checkpoint found in {work_dir}; training starts '
            'from scratch') in out
    assert 'latest checkpoint None' not in out
    assert (work_dir / 'epoch_1.pth').is_file()


def test_test_refuses_a_file_that_is_no_checkpoint(tiny_config, tmp_path):
    junk = tmp_path / 'junk.pth'
    junk.write_text('not a checkpoint\n')
    proc = subprocess.run(
        [sys.executable, 'tools/test.py', tiny_config, junk],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600)
    assert proc.returncode != 0
    assert f'not a checkpoint file: {junk}' in proc.stderr
    assert junk.read_text() == 'not a checkpoint\n'


def test_unannotated_split_without_format_only(tiny_config,
                                               resumed_in_empty_dir,
                                               tmp_path, synthetic_root):
    work_dir = tmp_path / 'test'
    out = _run(
        sys.executable, 'tools/test.py', tiny_config,
        resumed_in_empty_dir[0] / 'epoch_1.pth', '--work-dir', work_dir,
        '--cfg-options',
        'test_dataloader.dataset.ann_file=annotations/valid_unannotated.json')
    assert 'has no annotations, so there is no AP' in out
    assert 'segm_mAP' not in out
    # Written under the work dir, by rename: no temporary files are left.
    assert sorted(p.name for p in work_dir.iterdir()
                  if 'results' in p.name) == [
                      'results.json', 'results.submission_file.zip'
                  ]
    _check_results(work_dir / 'results.json',
                   synthetic_root / 'annotations' / 'valid.json')
