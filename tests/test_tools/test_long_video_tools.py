"""tools/analysis_tools/video_memory.py and id_switches.py."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData
from tool_loader import load_tool

ROOT = Path(__file__).parents[2]
CONFIG = str(ROOT / 'configs' / 'ttsrn' / 'ttsrn_synthetic.py')


def _tool(name):
    return load_tool(f'tools/analysis_tools/{name}.py')


video_memory = _tool('video_memory')
id_switches = _tool('id_switches')


def test_synthetic_video_has_the_frames_asked(tmp_path):
    path = str(tmp_path / 'v.mp4')
    video_memory.write_video(path, 7, (40, 56))
    reader = cv2.VideoCapture(path)
    assert int(reader.get(cv2.CAP_PROP_FRAME_COUNT)) == 7
    ok, frame = reader.read()
    assert ok and frame.shape == (40, 56, 3)


@pytest.mark.slow
def test_memory_runs_print_one_record_per_length(capsys):
    video_memory.main([
        CONFIG, '--frames', '6', '--size', '40', '56', '--threads', '1'
    ])
    records = [
        json.loads(line) for line in capsys.readouterr().out.splitlines()
    ]
    assert [r['frames'] for r in records] == [4, 6]  # the clip, then 6
    assert records[0]['peak_over_reference'] == 1.0
    for record in records:
        assert record['peak_rss_mb'] >= record['model_rss_mb'] > 0
        assert record['mode'] == 'stream'


def test_ping_pong_turns_without_repeating_a_frame():
    assert id_switches._ping_pong(3, 3) == [0, 1, 2, 1, 0, 1, 2]
    assert id_switches._ping_pong(1, 3) == [0, 0, 0]


class _Tracks:
    """Predicted (id, x-offset) pairs per frame: 4x4 squares at x."""

    def __init__(self, frames):
        self.frames = frames

    def instances(self, t):
        masks = torch.zeros(len(self.frames[t]), 4, 12, dtype=torch.bool)
        for j, (_, x) in enumerate(self.frames[t]):
            masks[j, :, x:x + 4] = True
        return InstanceData(
            masks=masks,
            instances_id=torch.tensor([i for i, _ in self.frames[t]],
                                      dtype=torch.long))


def _gt(xs):
    """One instance, a 4x4 square at x per frame (None: absent)."""
    gt = np.zeros((1, len(xs), 4, 12), bool)
    for t, x in enumerate(xs):
        if x is not None:
            gt[0, t, :, x:x + 4] = True
    return gt


def test_switches_count_id_changes_across_gaps():
    gt = _gt([0, 0, None, 0, 0])
    tracks = _Tracks([[(5, 0)], [(5, 0)], [], [(6, 0)], [(6, 0)]])
    counts = id_switches.count_switches(tracks, gt, 0.5)
    assert counts['switches'] == 1
    assert counts['matched'] == counts['visible'] == 4
    assert counts['ids'] == 2 and counts['merged_ids'] == 0


def test_a_better_duplicate_does_not_take_a_valid_match():
    gt = _gt([0, 0, 0])
    # Track 6 overlaps better in frame 1 (exact), track 5 is still valid.
    tracks = _Tracks([[(5, 0)], [(5, 1), (6, 0)], [(5, 0)]])
    assert id_switches.count_switches(tracks, gt, 0.5)['switches'] == 0


def test_an_id_on_two_instances_is_a_merge():
    gt = np.concatenate([_gt([0, None]), _gt([None, 8])])
    tracks = _Tracks([[(3, 0)], [(3, 8)]])
    counts = id_switches.count_switches(tracks, gt, 0.5)
    assert counts['merged_ids'] == 1 and counts['switches'] == 0
