"""Run every command of docs/custom_dataset.md on a tiny generated folder.

The tutorial's JSON block is written as ``data/my_vis/categories.json``, its
Python block to the path named on its first line, and its shell blocks are
run in order by bash in a scratch directory laid out like the repository
(``tools``, ``demo`` and ``configs/*`` linked). Only the training is
shortened, by options added to ``tools/train.py``.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mask_folder_utils import write_mask_folder

# Runs the whole tutorial, a training included: `make test-fast` skips it.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
DOC = ROOT / 'docs' / 'custom_dataset.md'
# One epoch of the 2 training videos, batch 1: 2 iterations.
SHORT_TRAINING = ' --cfg-options train_cfg.max_epochs=1 ' \
    'train_dataloader.num_workers=0 train_dataloader.persistent_workers=False'


def _blocks(text):
    """(language, body) of each fenced block, in order."""
    return re.findall(r'^```(\w*)\n(.*?)^```', text, flags=re.S | re.M)


def test_every_command_of_the_tutorial(tmp_path):
    blocks = _blocks(DOC.read_text())
    work = tmp_path / 'repo'
    (work / 'configs').mkdir(parents=True)
    for name in ('tools', 'demo'):
        (work / name).symlink_to(ROOT / name)
    for path in (ROOT / 'configs').iterdir():
        (work / 'configs' / path.name).symlink_to(path)
    data = work / 'data' / 'my_vis'
    write_mask_folder(data)

    categories = [body for lang, body in blocks if lang == 'json']
    assert len(categories) == 1
    (data / 'categories.json').write_text(categories[0])
    json.loads(categories[0])
    configs = [body for lang, body in blocks if lang == 'python']
    assert len(configs) == 1
    config_path = configs[0].splitlines()[0].lstrip('# ').strip()
    assert config_path == 'configs/my_vis/ttsrn_my_vis.py'
    (work / config_path).parent.mkdir()
    (work / config_path).write_text(configs[0])

    script = '\n'.join(body for lang, body in blocks if lang == 'shell')
    assert script.count('python ') == 5, script
    script = script.replace('python tools/train.py configs/my_vis/'
                            'ttsrn_my_vis.py',
                            'python tools/train.py configs/my_vis/'
                            'ttsrn_my_vis.py' + SHORT_TRAINING)
    assert SHORT_TRAINING in script
    env = dict(
        os.environ,
        PATH=f'{Path(sys.executable).parent}{os.pathsep}{os.environ["PATH"]}')
    proc = subprocess.run(['bash', '-euo', 'pipefail', '-c', script],
                          cwd=work,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]

    assert 'wrote data/my_vis/annotations/all.json: 3 videos' in out
    assert (data / 'annotations' / 'train_sub.json').is_file()
    assert 'youtube_vis/segm_mAP' in out
    results = json.loads(
        (work / 'work_dirs' / 'ttsrn_my_vis' / 'results.json').read_text())
    val = json.loads((data / 'annotations' / 'val_sub.json').read_text())
    assert {r['video_id'] for r in results} <= {v['id'] for v in val['videos']}
    demo = work / 'work_dirs' / 'ttsrn_my_vis' / 'video1.mp4'
    assert demo.is_file() and demo.stat().st_size > 0
