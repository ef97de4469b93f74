"""Where a video instance segmentation model loses AP: for every ground-truth
instance, the best spatio-temporal mask IoU reached by any predicted track
and by the tracks of its own category.

The IoU is YouTube-VIS's: intersections and unions summed over the video's
frames. An instance is *found* when some track reaches ``--iou-thr``. Of the
tracks that do, the highest-scored one gives its category: the right one,
and the instance is *right*; another, a *class error* (a model that reports
a track under several categories, as Mask2Former-VIS does, may still score
the right copy lower). Found by no track, it is a *mask error* (missed,
badly segmented or broken across tracks). Class errors point at the
classifier, mask errors at the masks or the tracking. Example, the
quickstart's held-out videos::

    python tools/analysis_tools/vis_errors.py \\
        data/synthetic_vis/annotations/valid.json \\
        work_dirs/ttsrn_synthetic/results.json

Prints one JSON line of counts and fractions, and with ``--per-instance``
first one line per instance, worst first.
"""
import argparse
import contextlib
import io
import json
import os.path as osp
from collections import defaultdict
from typing import Dict, List

import pycocotools.mask as mask_util
from mmdet.evaluation.functional import YTVIS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Per ground-truth instance: best track IoU, of any '
        'category and of its own')
    parser.add_argument('ann_file', help='YouTube-VIS annotation json')
    parser.add_argument(
        'results', help='results json (the results.json of tools/test.py)')
    parser.add_argument(
        '--iou-thr',
        type=float,
        default=0.5,
        help='spatio-temporal IoU from which an instance counts as found')
    parser.add_argument(
        '--per-instance',
        action='store_true',
        help='also print one line per instance, worst first')
    return parser.parse_args(argv)


def load(ann_file: str, results_file: str):
    """Ground truth as :class:`YTVIS` and the results grouped by video.

    Raises:
        FileNotFoundError: Naming a missing file.
        ValueError: Naming a results file that is not JSON, a result of an
            unknown video or a track whose frame count differs from its
            video's.
    """
    for path in (ann_file, results_file):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{path}: no such file')
    with contextlib.redirect_stdout(io.StringIO()):
        gt = YTVIS(ann_file)
    with open(results_file) as f:
        try:
            results = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f'{results_file}: not valid JSON ({e})') from e
    tracks = defaultdict(list)
    for i, track in enumerate(results):
        video = gt.vids.get(track.get('video_id'))
        if video is None:
            raise ValueError(f'{results_file}: result {i} names video '
                             f'{track.get("video_id")!r}, which '
                             f'{ann_file} does not have')
        if len(track['segmentations']) != video['length']:
            raise ValueError(
                f'{results_file}: result {i} has '
                f'{len(track["segmentations"])} frames, video '
                f'{video["id"]} has {video["length"]}')
        tracks[video['id']].append(track)
    return gt, tracks


def video_iou(gt_rles: List, pred_rles: List) -> float:
    """YouTube-VIS IoU of two frame lists of RLEs (``None`` = no mask)."""
    inter = union = 0.0
    for g, p in zip(gt_rles, pred_rles):
        area_g = float(mask_util.area(g)) if g else 0.0
        area_p = float(mask_util.area(p)) if p else 0.0
        both = float(mask_util.area(mask_util.merge(
            [g, p], intersect=True))) if g and p else 0.0
        inter += both
        union += area_g + area_p - both
    return inter / union if union else 0.0


def instance_errors(gt: YTVIS, tracks: Dict[int, List[dict]],
                    iou_thr: float) -> List[dict]:
    """One row per ground-truth instance: its best IoU over the tracks of
    its video (``best_iou``) and over those of its own category
    (``same_category_iou``), the category of the highest-scored track that
    reaches ``iou_thr`` (``found_category_id``, ``None`` if none does) and
    its ``outcome``: ``right``, ``class error`` or ``mask error``."""
    rows = []
    for ann in gt.dataset['annotations']:
        video = gt.vids[ann['video_id']]
        gt_rles = [
            gt.annToRLE(ann, f) if ann['segmentations'][f] else None
            for f in range(video['length'])
        ]
        best_iou = same_iou = 0.0
        found, found_score = None, float('-inf')
        for track in tracks.get(ann['video_id'], []):
            iou = video_iou(gt_rles, track['segmentations'])
            best_iou = max(best_iou, iou)
            if track['category_id'] == ann['category_id']:
                same_iou = max(same_iou, iou)
            if iou >= iou_thr and track['score'] > found_score:
                found, found_score = track['category_id'], track['score']
        if found is None:
            outcome = 'mask error'
        elif found == ann['category_id']:
            outcome = 'right'
        else:
            outcome = 'class error'
        rows.append(
            dict(
                video_id=ann['video_id'],
                instance_id=ann['id'],
                category_id=ann['category_id'],
                frames=sum(s is not None for s in ann['segmentations']),
                best_iou=round(best_iou, 4),
                same_category_iou=round(same_iou, 4),
                found_category_id=found,
                outcome=outcome))
    return rows


def summarise(rows: List[dict], iou_thr: float) -> dict:
    """Counts and fractions of the outcomes, and the mean best IoUs (0 for
    no instances)."""

    def mean(values):
        return round(sum(values) / len(rows), 4) if rows else 0.0

    outcomes = ('right', 'class error', 'mask error')
    counts = {k: sum(r['outcome'] == k for r in rows) for k in outcomes}
    return dict(
        instances=len(rows),
        iou_thr=iou_thr,
        **counts,
        **{f'{k} fraction': mean(r['outcome'] == k for r in rows)
           for k in outcomes},
        mean_best_iou=mean(r['best_iou'] for r in rows),
        mean_same_category_iou=mean(r['same_category_iou'] for r in rows))


def main(argv=None) -> dict:
    args = parse_args(argv)
    gt, tracks = load(args.ann_file, args.results)
    rows = instance_errors(gt, tracks, args.iou_thr)
    if args.per_instance:
        for row in sorted(rows, key=lambda r: r['best_iou']):
            print(json.dumps(row))
    summary = summarise(rows, args.iou_thr)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == '__main__':
    main()
