"""Identity switches of a model on long synthetic videos made by joining
clips.

Each synthetic video (``mmttsrn.datasets.make_synthetic_vis``) is played
forwards, backwards, forwards... (``--passes`` times, the turning frames not
repeated), so the motion stays continuous and every object keeps its ground
truth id over the whole long video. The synthetic objects often enter late
or leave early, so in the joined video they disappear for a while and come
back: the case where linking windows by mask IoU over their overlap loses
them.

Ground-truth and predicted instances are matched frame by frame on mask
IoU as CLEAR-MOT matches them (see :func:`count_switches`). Prints one JSON
line per linker setting: identity switches, predicted ids matched to more
than one ground-truth instance (wrong merges), matched frames, predicted
ids per ground-truth instance, and the video mask AP of the joined videos
(YouTube-VIS's: a track is scored by its IoU over the whole video, so a
broken track or wrongly joined frames cost AP).

Example, the quickstart checkpoint with and without re-identification::

    python tools/analysis_tools/id_switches.py \\
        configs/ttsrn/ttsrn_synthetic.py \\
        work_dirs/ttsrn_synthetic/epoch_35.pth --reid-thr none 0.5 0.8
"""
import argparse
import contextlib
import io
import json
import os.path as osp
import tempfile
import warnings
from collections import Counter
from typing import List, Optional

import mmcv
import mmengine
import numpy as np
import pycocotools.mask as mask_util
import torch
from mmdet.evaluation.functional import YTVIS, YTVISeval
from mmengine.config import DictAction
from scipy.optimize import linear_sum_assignment

from mmttsrn.apis import init_model, track_video
from mmttsrn.datasets import make_synthetic_vis


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Identity switches on synthetic videos joined into long '
        'ones')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--videos', type=int, default=20, help='synthetic videos to join')
    parser.add_argument(
        '--seed',
        type=int,
        default=1,
        help='seed of the synthetic videos (the quickstart trains on seed '
        '0\'s)')
    parser.add_argument(
        '--passes',
        type=int,
        default=6,
        help='plays of each video, alternately forwards and backwards')
    parser.add_argument(
        '--reid-thr',
        nargs='+',
        default=['none', '0.5', '0.8'],
        help='linker reid_thr values to compare ("none": mask IoU only)')
    parser.add_argument(
        '--overlap', type=int, help='linker overlap (default: the config\'s)')
    parser.add_argument(
        '--max-per-video',
        type=int,
        default=50,
        help='instances kept per video, so that every fragment is seen')
    parser.add_argument(
        '--iou', type=float, default=0.5, help='mask IoU of a match')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        help='config overrides, e.g. model.test_cfg.mask_thr=0.4')
    return parser.parse_args(argv)


def joined_videos(root: str, passes: int):
    """The synthetic valid videos, each played ``passes`` times back and
    forth.

    Yields:
        tuple: The frames (BGR arrays), ground-truth masks (G, L, H, W)
        bool, and the video's annotations in the official format (the
        ``annotations`` of its G instances, with per-frame segmentations,
        areas and boxes in the joined order, and its ``video`` record).
    """
    ann = mmengine.load(osp.join(root, 'annotations', 'valid.json'))
    by_video = {}
    for a in ann['annotations']:
        by_video.setdefault(a['video_id'], []).append(a)
    for video in ann['videos']:
        length = video['length']
        order = _ping_pong(length, passes)
        frames = [
            mmcv.imread(osp.join(root, 'valid', 'JPEGImages', name))
            for name in video['file_names']
        ]
        instances = by_video.get(video['id'], [])
        gt = np.zeros((len(instances), length, video['height'],
                       video['width']), bool)
        for i, a in enumerate(instances):
            for t, segm in enumerate(a['segmentations']):
                if segm is not None:
                    gt[i, t] = mask_util.decode(segm) > 0
        joined = [
            dict(
                a,
                length=len(order),
                **{
                    key: [a[key][t] for t in order]
                    for key in ('segmentations', 'areas', 'bboxes')
                }) for a in instances
        ]
        info = dict(
            video,
            length=len(order),
            file_names=[video['file_names'][t] for t in order])
        yield [frames[t] for t in order], gt[:, order], dict(
            annotations=joined, video=info)


def _ping_pong(length: int, passes: int) -> List[int]:
    """Frame order of ``passes`` plays, forwards then backwards..., the
    turning frame shown once."""
    forth = list(range(length))
    order = list(forth)
    for p in range(1, passes):
        play = forth[::-1] if p % 2 else forth
        order += play[1:] if length > 1 else play
    return order


def count_switches(tracks, gt: np.ndarray, iou_thr: float) -> dict:
    """Identity switches and merges of one video, CLEAR-MOT style.

    In each frame a ground-truth instance keeps its previous match if that
    predicted instance is still there with mask IoU >= ``iou_thr``; the
    others are matched one to one by Hungarian matching on IoU (pairs
    below ``iou_thr`` do not count). A switch is a match whose id differs
    from the instance's previous match (frames without a match are
    skipped); a merged id is a predicted id matched to more than one
    ground-truth instance.

    Args:
        tracks (VideoTracks): The model's tracks of the joined video.
        gt (np.ndarray): (G, L, H, W) bool ground-truth masks.
    """
    switches = matched = visible = 0
    ids_per_gt: List[set] = [set() for _ in gt]
    last: List[Optional[int]] = [None] * len(gt)
    for t in range(gt.shape[1]):
        pred = tracks.instances(t)
        masks = pred.masks.flatten(1).numpy()  # (k, H*W)
        ids = pred.instances_id.tolist()
        targets = gt[:, t].reshape(len(gt), -1)  # (G, H*W)
        inter = (targets[:, None] & masks[None]).sum(-1)
        union = (targets[:, None] | masks[None]).sum(-1)
        iou = inter / np.maximum(union, 1)  # (G, k)
        iou[iou < iou_thr] = 0
        present = targets.any(1)
        visible += int(present.sum())
        match = {}
        for g in np.flatnonzero(present):
            if last[g] in ids and iou[g, ids.index(last[g])] > 0:
                match[g] = ids.index(last[g])
        free_g = [g for g in np.flatnonzero(present) if g not in match]
        free_p = [j for j in range(len(ids)) if j not in match.values()]
        if free_g and free_p:
            rows, cols = linear_sum_assignment(-iou[np.ix_(free_g, free_p)])
            for r, c in zip(rows, cols):
                if iou[free_g[r], free_p[c]] > 0:
                    match[free_g[r]] = free_p[c]
        for g, j in match.items():
            matched += 1
            ids_per_gt[g].add(ids[j])
            if last[g] is not None and last[g] != ids[j]:
                switches += 1
            last[g] = ids[j]
    owners = Counter(i for found in ids_per_gt for i in found)
    return dict(
        switches=switches,
        merged_ids=sum(n > 1 for n in owners.values()),
        matched=matched,
        visible=visible,
        ids=sum(len(found) for found in ids_per_gt),
        instances=len(gt))


def predictions(tracks, video_id: int) -> List[dict]:
    """The kept instances of a video as YouTube-VIS results."""
    kept = tracks.kept
    per_frame = [
        tracks.instances(t, encode=True).masks for t in range(len(tracks))
    ]
    results = []
    for j, (score, label) in enumerate(zip(kept['scores'], kept['labels'])):
        segms = []
        for masks in per_frame:
            rle = dict(masks[j])
            rle['counts'] = rle['counts'].decode()
            segms.append(rle)
        results.append(
            dict(
                video_id=video_id,
                score=float(score),
                category_id=int(label) + 1,
                segmentations=segms))
    return results


def video_ap(videos, results: List[dict], categories) -> float:
    """Video mask AP (YouTube-VIS's, mmdet's implementation)."""
    gt = dict(
        videos=[v['video'] for v in videos],
        annotations=[a for v in videos for a in v['annotations']],
        categories=categories)
    if not results:
        return 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        ytvis = YTVIS(gt)
        evaluator = YTVISeval(ytvis, ytvis.loadRes(results), 'segm')
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0])


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings('ignore')
    options = {
        'model.test_cfg.max_per_video': args.max_per_video,
        **args.cfg_options
    }
    if args.overlap is not None:
        options['model.test_cfg.linker.overlap'] = args.overlap
    model = init_model(args.config, args.checkpoint, args.device, options)
    with tempfile.TemporaryDirectory() as root:
        make_synthetic_vis(
            root, num_train_videos=0, num_val_videos=args.videos,
            seed=args.seed)
        videos = list(joined_videos(root, args.passes))
        categories = mmengine.load(
            osp.join(root, 'annotations', 'valid.json'))['categories']
    for value in args.reid_thr:
        model.linker.reid_thr = None if value == 'none' else float(value)
        totals = dict(
            switches=0,
            merged_ids=0,
            matched=0,
            visible=0,
            ids=0,
            instances=0)
        results = []
        with torch.no_grad():
            for frames, gt, video in videos:
                tracks = track_video(model, frames)
                for key, count in count_switches(tracks, gt,
                                                 args.iou).items():
                    totals[key] += count
                results += predictions(tracks, video['video']['id'])
        print(
            json.dumps(
                dict(
                    reid_thr=model.linker.reid_thr,
                    overlap=model.linker.overlap,
                    videos=len(videos),
                    frames=sum(len(v[0]) for v in videos),
                    ap=round(
                        video_ap([v[2] for v in videos], results,
                                 categories), 4),
                    ids_per_instance=round(
                        totals['ids'] / max(totals['instances'], 1), 3),
                    matched_fraction=round(
                        totals['matched'] / max(totals['visible'], 1), 4),
                    **totals)),
            flush=True)


if __name__ == '__main__':
    main()
