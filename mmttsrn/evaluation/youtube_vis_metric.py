"""mmdet's YouTube-VIS metric, writing server-ready results while it scores."""
import logging
import os
import os.path as osp
import tempfile
import zipfile
from collections import defaultdict
from typing import Dict, List, Sequence

import mmengine
import numpy as np
import pycocotools.mask as mask_util
import torch
from mmdet.evaluation import YouTubeVISMetric
from mmdet.registry import METRICS
from mmdet.structures import DetDataSample
from mmengine.logging import print_log

__all__ = ['YouTubeVISResultsMetric']


def _replace_atomically(path: str, write) -> None:
    """Call ``write(tmp_path)``, then rename the file to ``path``.

    The temporary file is in the same folder, so the rename is atomic: a
    run killed while writing leaves the old file (or none), never a
    truncated one.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.tmp')
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


class _DecodedFrames(Sequence):
    """A video's frame samples whose predicted masks, if RLE-encoded (as
    ``TTSRN.test_step`` gives them for lazily read videos), are decoded
    when a frame is read, one frame at a time."""

    def __init__(self, frames: Sequence[DetDataSample]) -> None:
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> DetDataSample:
        frame = self.frames[index]
        pred = frame.pred_track_instances
        if not isinstance(pred.masks, list):
            return frame
        if pred.masks:
            masks = mask_util.decode(pred.masks).transpose(2, 0, 1)
        else:
            masks = np.zeros((0, *frame.ori_shape[:2]), np.uint8)
        decoded = DetDataSample(metainfo=frame.metainfo)
        decoded.pred_track_instances = pred.clone()
        decoded.pred_track_instances.masks = torch.from_numpy(masks).bool()
        return decoded


@METRICS.register_module()
class YouTubeVISResultsMetric(YouTubeVISMetric):
    """:class:`mmdet.evaluation.YouTubeVISMetric`, changed as follows.

    - With ``outfile_prefix`` set, ``<prefix>.json`` and its zip are written
      also when AP is computed (mmdet writes them only in ``format_only``).
    - Each file is written to a temporary file and renamed into place.
    - The written ``category_id`` is the dataset's own category id
      (``dataset_meta['cat_ids']``); mmdet writes ``label + 1``, which is
      right only for ids 1..K in order. AP is unaffected: it is computed on
      labels.
    - A split whose file has no annotations (the dataset's metainfo has
      ``has_annotations=False``) is not scored, since every AP would be -1:
      a warning says so and the results are only written, as with
      ``format_only``.
    - It can evaluate more than once in a process (validation every few
      epochs, then a test): mmdet's ``evaluate`` leaves its video records as
      a plain dict without the ``'images'`` key, and the next evaluation
      fails with ``KeyError: 'images'``.
    - A model that keeps no instance in any video (early in training every
      mask can be empty) scores 0 with a warning; mmdet's scorer would
      fail on the empty list.
    - Predicted masks may come as lists of RLE dicts (a long video's dense
      masks need not exist at once); each frame's are decoded only while
      that frame is encoded for the results.
    """

    _DEFAULT_ITEMS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')

    def process_video(self, data_samples: Sequence[DetDataSample]) -> None:
        super().process_video(_DecodedFrames(data_samples))

    def evaluate(self, size: int) -> dict:
        try:
            return super().evaluate(size)
        finally:
            self._vis_meta_info = defaultdict(list)

    def compute_metrics(self, results: List) -> Dict[str, float]:
        unannotated = not self.format_only and \
            (self.dataset_meta or {}).get('has_annotations') is False
        if unannotated:
            where = (f'results are written to {self.outfile_prefix}.json'
                     if self.outfile_prefix is not None else
                     'set outfile_prefix to write the results')
            print_log(
                'the evaluated split has no annotations, so there is no AP '
                f'to compute; {where} (format-only: pass --format-only to '
                'tools/test.py to ask for this)',
                logger='current',
                level=logging.WARNING)
        preds = self.format_preds([pred for pred, _ in results])
        if self.outfile_prefix is not None and not self.format_only:
            self.save_pred_results(preds)
        if unannotated:
            return {}
        if not preds and not self.format_only:
            print_log(
                f'the model kept no instance in any of the {len(results)} '
                'evaluated videos; every AP is 0',
                logger='current',
                level=logging.WARNING)
            items = self.metric_items or self._DEFAULT_ITEMS
            return {f'segm_{item}': 0.0 for item in items}
        return super().compute_metrics(results)

    def save_pred_results(self, pred_results: List) -> None:
        """Write ``<prefix>.json`` and ``<prefix>.submission_file.zip``."""
        if self.outfile_prefix is None:
            # mmdet writes into a temporary folder that is deleted at once.
            return
        cat_ids = (self.dataset_meta or {}).get('cat_ids')
        if cat_ids is not None:
            pred_results = [
                dict(res, category_id=int(cat_ids[res['category_id'] - 1]))
                for res in pred_results
            ]
        json_file = f'{self.outfile_prefix}.json'
        zip_file = f'{self.outfile_prefix}.submission_file.zip'

        def write_json(path):
            mmengine.dump(pred_results, path, file_format='json')

        def write_zip(path):
            with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as zf:
                zf.write(json_file, 'results.json')

        _replace_atomically(json_file, write_json)
        _replace_atomically(zip_file, write_zip)
        print_log(
            f'wrote {json_file} and {zip_file} (submit the zip to the '
            'YouTube-VIS server)', 'current')
