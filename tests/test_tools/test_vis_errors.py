"""tools/analysis_tools/vis_errors.py on hand-made masks whose IoUs are
known."""
import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
from tool_loader import load_tool

ROOT = Path(__file__).parents[2]
vis_errors = load_tool('tools/analysis_tools/vis_errors.py')

H, W = 20, 30


def _rle(x0, x1, y0=0, y1=10):
    mask = np.zeros((H, W), np.uint8, order='F')
    mask[y0:y1, x0:x1] = 1
    rle = mask_util.encode(mask)
    rle['counts'] = rle['counts'].decode()
    return rle


def _write(tmp_path, results):
    gt = dict(
        videos=[dict(id=1, width=W, height=H, length=2,
                     file_names=['a/0.jpg', 'a/1.jpg'])],
        categories=[dict(id=1, name='a'), dict(id=2, name='b')],
        annotations=[
            # Found by a track of its category: right.
            dict(id=1, video_id=1, category_id=1, iscrowd=0, height=H,
                 width=W, segmentations=[_rle(0, 10), _rle(0, 10)],
                 areas=[100, 100], bboxes=[[0, 0, 10, 10]] * 2),
            # Found, but the higher-scored finder says category 1.
            dict(id=2, video_id=1, category_id=2, iscrowd=0, height=H,
                 width=W, segmentations=[_rle(20, 30), None],
                 areas=[100, None], bboxes=[[20, 0, 10, 10], None]),
            # Only half covered in its one frame: missed.
            dict(id=3, video_id=1, category_id=2, iscrowd=0, height=H,
                 width=W, segmentations=[None, _rle(0, 30, 10, 20)],
                 areas=[None, 300], bboxes=[None, [0, 10, 30, 10]]),
        ])
    ann, res = tmp_path / 'gt.json', tmp_path / 'results.json'
    ann.write_text(json.dumps(gt))
    res.write_text(json.dumps(results))
    return str(ann), str(res)


def _track(category, score, masks):
    return dict(video_id=1, category_id=category, score=score,
                segmentations=masks)


def test_outcomes_and_ious(tmp_path, capsys):
    ann, res = _write(tmp_path, [
        # Instance 1 in both frames, and half of instance 1 in frame 0.
        _track(1, 0.9, [_rle(0, 10), _rle(0, 10)]),
        # Instance 2, reported under both categories; category 1 first.
        _track(1, 0.8, [_rle(20, 30), None]),
        _track(2, 0.3, [_rle(20, 30), None]),
        # 120 of instance 3's 300 pixels: IoU 0.4, below the threshold.
        _track(2, 0.7, [None, _rle(0, 12, 10, 20)]),
    ])
    summary = vis_errors.main([ann, res, '--per-instance'])
    rows = [json.loads(line) for line in capsys.readouterr().out.split('\n')
            if line.startswith('{"video_id"')]
    by_id = {r['instance_id']: r for r in rows}
    assert by_id[1]['outcome'] == 'right'
    assert by_id[1]['best_iou'] == 1.0
    assert by_id[2]['outcome'] == 'class error'
    assert by_id[2]['found_category_id'] == 1
    assert by_id[2]['same_category_iou'] == 1.0
    assert by_id[3]['outcome'] == 'mask error'
    assert by_id[3]['best_iou'] == pytest.approx(120 / 300, abs=1e-4)
    assert [r['best_iou'] for r in rows] == sorted(r['best_iou'] for r in rows)
    assert summary['right'] == summary['class error'] == 1
    assert summary['mask error'] == 1 and summary['instances'] == 3
    assert summary['right fraction'] == pytest.approx(1 / 3, abs=1e-4)
    assert summary['mean_best_iou'] == pytest.approx((2 + 0.4) / 3, abs=1e-4)


def test_the_threshold_decides_found(tmp_path):
    ann, res = _write(tmp_path, [_track(2, 0.7, [None, _rle(0, 12, 10, 20)])])
    assert vis_errors.main([ann, res, '--iou-thr', '0.35'])['right'] == 1
    assert vis_errors.main([ann, res, '--iou-thr', '0.45'])['right'] == 0


def test_no_instances_give_zeros():
    summary = vis_errors.summarise([], 0.5)
    assert summary['instances'] == 0 and summary['mean_best_iou'] == 0.0


def test_bad_inputs_are_named(tmp_path):
    ann, res = _write(tmp_path, [dict(video_id=7, category_id=1, score=1.0,
                                      segmentations=[None, None])])
    with pytest.raises(ValueError, match='video 7'):
        vis_errors.main([ann, res])
    ann, res = _write(tmp_path, [_track(1, 1.0, [None])])
    with pytest.raises(ValueError, match='1 frames, video 1 has 2'):
        vis_errors.main([ann, res])
    with pytest.raises(FileNotFoundError, match='missing.json'):
        vis_errors.main([ann, str(tmp_path / 'missing.json')])
    Path(res).write_text('[{"video_id": 1,')
    with pytest.raises(ValueError, match='results.json: not valid JSON'):
        vis_errors.main([ann, res])
