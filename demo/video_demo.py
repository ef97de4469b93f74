"""Segment and track the instances of a video with TT-SRN and draw them.

Example::

    python demo/video_demo.py demo.mp4 configs/ttsrn/ttsrn_yvis.py \
        --checkpoint work_dirs/ttsrn_yvis/epoch_18.pth --out demo_out.mp4

VIDEO is a video file (anything OpenCV decodes) or a folder of frames
(``.jpg``/``.jpeg``/``.png``, in file name order). OUT is a video file
(``.mp4``/``.avi``) or a folder, into which the drawn frames are written as
JPEGs named like the input frames (or ``000000.jpg``... for a video file).
Each instance keeps its colour in every frame (the colour is derived from its
track id); its mask, box, category, id and score are drawn. OUT may not be
VIDEO itself or lie inside a VIDEO folder, so the input is never written over.

Videos of any length run in bounded memory: the frames are read one at a
time, twice. The first pass segments and tracks (keeping an RLE mask per
track and frame), the second draws each frame with the tracks kept; two
passes because a track's score and category, which decide whether and how
it is drawn, are known only at the end of the video. Both passes show a
progress bar with the frames per second.
"""
import argparse
import os
import os.path as osp
import warnings
from typing import List, Optional

import cv2
import mmcv
import numpy as np
from mmdet.structures import DetDataSample
from mmengine.utils import track_iter_progress

from mmttsrn.apis import VideoFrames, init_model, track_video
from mmttsrn.visualization import TrackInstanceVisualizer

VIDEO_EXTENSIONS = {'.mp4': 'mp4v', '.avi': 'XVID'}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Run TT-SRN on a video and draw its instances')
    parser.add_argument(
        'video', help='video file, or a folder of .jpg/.png frames')
    parser.add_argument('config', help='model config file')
    parser.add_argument(
        '--checkpoint',
        help='checkpoint file; without one the weights are random')
    parser.add_argument(
        '--out',
        required=True,
        help='output .mp4/.avi file, or a folder for JPEG frames')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='draw instances scoring above this')
    parser.add_argument(
        '--device', default='cpu', help='device, e.g. cpu or cuda:0')
    parser.add_argument(
        '--fps',
        type=float,
        help='frame rate of an output video (default: the input video\'s, '
        'or 10 for a folder of frames)')
    return parser.parse_args(argv)


def check_out_is_not_input(video: str, out: str) -> None:
    """Refuse an ``out`` that is ``video`` or inside a ``video`` folder.

    Drawn frames keep the input frames' names, so writing them into the
    input folder would replace the input.
    """
    src, dst = osp.realpath(video), osp.realpath(out)
    if dst == src or (osp.isdir(src) and dst.startswith(src + os.sep)):
        raise ValueError(
            f'--out {out} is the input {video} or inside it: refusing to '
            'write over the input; choose another --out')


class FrameWriter:
    """Write drawn frames to a video file or as JPEGs into a folder."""

    def __init__(self, out: str, fps: float) -> None:
        self.out = out
        self.fps = fps
        ext = osp.splitext(out)[1].lower()
        self.fourcc = VIDEO_EXTENSIONS.get(ext)
        if ext and self.fourcc is None and not osp.isdir(out):
            raise ValueError(f'--out {out}: expected a folder or a video '
                             f'file ending in {sorted(VIDEO_EXTENSIONS)}')
        self._writer = None
        target = osp.dirname(osp.abspath(out)) if self.fourcc else out
        os.makedirs(target, exist_ok=True)

    def write(self, frame: np.ndarray, name: str) -> None:
        """Write one BGR frame."""
        if self.fourcc is None:
            stem = osp.splitext(name)[0]
            mmcv.imwrite(frame, osp.join(self.out, f'{stem}.jpg'))
            return
        if self._writer is None:
            height, width = frame.shape[:2]
            self._writer = cv2.VideoWriter(
                self.out, cv2.VideoWriter_fourcc(*self.fourcc), self.fps,
                (width, height))
            if not self._writer.isOpened():
                raise RuntimeError(f'OpenCV cannot write video {self.out}; '
                                   'write frames to a folder instead')
        self._writer.write(frame)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise FileNotFoundError(
            f'checkpoint file {args.checkpoint} does not exist')
    check_out_is_not_input(args.video, args.out)
    frames = VideoFrames(args.video)
    writer = FrameWriter(args.out, args.fps or frames.fps or 10.0)
    if args.checkpoint is None:
        warnings.warn('no --checkpoint: drawing the output of random weights')
    model = init_model(args.config, args.checkpoint, device=args.device)

    print(f'segmenting {len(frames)} frames of {args.video}')
    tracks = track_video(model, frames, progress=True)

    print('drawing')
    visualizer = TrackInstanceVisualizer(name='video_demo', line_width=2)
    visualizer.dataset_meta = model.dataset_meta
    try:
        for t, frame in track_iter_progress((enumerate(frames), len(tracks))):
            name = frames.name(t)
            sample = DetDataSample(metainfo=tracks.frames[t].metainfo)
            sample.pred_track_instances = tracks.instances(t)
            visualizer.add_datasample(
                name,
                mmcv.bgr2rgb(frame),
                data_sample=sample,
                draw_gt=False,
                pred_score_thr=args.score_thr)
            writer.write(mmcv.rgb2bgr(visualizer.get_image()), name)
    finally:
        writer.close()
    print(f'drawn frames written to {args.out}')


if __name__ == '__main__':
    main()
