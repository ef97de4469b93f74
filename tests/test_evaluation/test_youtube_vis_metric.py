"""YouTubeVISResultsMetric: ids, atomic files, unannotated splits, RLE
predictions."""
import json
import logging
import zipfile

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData

import mmttsrn.evaluation.youtube_vis_metric as metric_module
from mmttsrn.evaluation import YouTubeVISResultsMetric

PRED = dict(video_id=1, score=0.5, category_id=2, segmentations=[None])


@pytest.fixture
def logged():
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _metric(tmp_path, **meta):
    metric = YouTubeVISResultsMetric(
        outfile_prefix=str(tmp_path / 'out' / 'results'))
    metric.dataset_meta = dict(classes=('a', 'b'), cat_ids=[3, 7], **meta)
    return metric


def _read(tmp_path):
    prefix = tmp_path / 'out' / 'results'
    results = json.loads((tmp_path / 'out' / 'results.json').read_text())
    with zipfile.ZipFile(f'{prefix}.submission_file.zip') as zf:
        assert json.loads(zf.read('results.json')) == results
    return results


def test_writes_the_dataset_category_ids(tmp_path):
    _metric(tmp_path).save_pred_results([dict(PRED)])
    assert _read(tmp_path) == [dict(PRED, category_id=7)]
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == [
        'results.json', 'results.submission_file.zip'
    ]


def test_an_interrupted_write_leaves_the_old_files(tmp_path, monkeypatch):
    metric = _metric(tmp_path)
    metric.save_pred_results([dict(PRED)])
    before = {p.name: p.read_bytes() for p in (tmp_path / 'out').iterdir()}

    def dump_then_die(obj, path, **kwargs):
        with open(path, 'w') as f:
            f.write('[{"video_id": 1, "sco')
        raise KeyboardInterrupt

    monkeypatch.setattr(metric_module.mmengine, 'dump', dump_then_die)
    with pytest.raises(KeyboardInterrupt):
        metric.save_pred_results([dict(PRED, score=0.9)])
    after = {p.name: p.read_bytes() for p in (tmp_path / 'out').iterdir()}
    assert after == before  # no truncated file, no temporary left


def test_unannotated_split_is_written_not_scored(tmp_path, logged):
    metric = _metric(tmp_path, has_annotations=False)
    assert metric.compute_metrics([([dict(PRED)], [])]) == {}
    assert _read(tmp_path) == [dict(PRED, category_id=7)]
    assert any('no annotations' in m and 'no AP' in m for m in logged)


def test_no_predictions_scores_zero(tmp_path, logged):
    """Early in training every mask can be empty: AP 0, not a crash."""
    metric = _metric(tmp_path)
    metric.metric_items = ['mAP', 'AR@10']
    assert metric.compute_metrics([([], []), ([], [])]) == {
        'segm_mAP': 0.0,
        'segm_AR@10': 0.0
    }
    assert _read(tmp_path) == []
    assert any('kept no instance' in m and '2 evaluated' in m
               for m in logged)


def test_evaluates_again_after_an_evaluation(tmp_path, monkeypatch):
    """Validation every few epochs: each evaluation starts afresh."""
    metric = _metric(tmp_path)
    monkeypatch.setattr(metric, 'compute_metrics', lambda results: {})
    for _ in range(2):
        metric._vis_meta_info['images'].append(dict(id=1))
        metric._vis_meta_info['videos'].append(dict(id=1))
        metric.results.append(([], []))
        metric.evaluate(1)
        assert dict(metric._vis_meta_info) == {}
        assert metric._vis_meta_info['images'] == []


def _video(encode):
    """A 2-frame video, two predicted instances, masks dense or RLE."""
    frames = []
    for t in range(2):
        masks = torch.zeros(2, 6, 8, dtype=torch.bool)
        masks[0, t:t + 3, 1:4] = True
        masks[1, 4:, 5:] = t == 1
        if encode:
            masks = mask_util.encode(
                np.asfortranarray(masks.permute(1, 2, 0).numpy(), np.uint8))
        frame = DetDataSample(
            metainfo=dict(
                img_id=t + 1,
                video_id=1,
                frame_id=t,
                ori_shape=(6, 8),
                ori_video_length=2))
        frame.pred_track_instances = InstanceData(
            masks=masks,
            bboxes=torch.zeros(2, 4),
            scores=torch.tensor([0.9, 0.4]),
            labels=torch.tensor([0, 1]),
            instances_id=torch.tensor([0, 3]))
        frames.append(frame)
    return frames


def test_rle_masks_give_the_results_of_dense_masks(tmp_path):
    results = []
    for encode in (False, True):
        metric = _metric(tmp_path)
        metric.process_video(_video(encode))
        results.append(metric.results)
    dense, rle = results
    assert dense == rle
    assert len(dense[0][0]) == 2  # two instances
