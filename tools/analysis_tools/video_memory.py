"""Peak memory of inference on videos of several lengths.

Writes a synthetic video of each length (coloured squares moving over
noise) as an ``.mp4`` file, then runs each in a fresh process, so that each
peak is its own, and prints one JSON line per run: the peak resident memory
of the process (``ru_maxrss``), the resident memory once the model is built,
the time (wall and CPU) and the frames per second. The first length is the
reference (default: one clip of the model, T frames); each line also gives
its peak over the reference's.

Two ways to run the video:

- ``stream`` (default): ``mmttsrn.apis.track_video`` on the file, the
  frames read one at a time (the bounded-memory path);
- ``dense``: the frames decoded into a list first, then
  ``mmttsrn.apis.inference_video`` (the whole video in memory, as before
  streaming; it also runs on older versions of this package, to compare).

Example, the quickstart model (random weights) at its frame size::

    python tools/analysis_tools/video_memory.py \\
        configs/ttsrn/ttsrn_synthetic.py --frames 36 300 1000
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import cv2
import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Peak memory of inference on videos of several lengths')
    parser.add_argument('config', help='model config file')
    parser.add_argument(
        '--checkpoint', help='checkpoint file (default: random weights)')
    parser.add_argument(
        '--frames',
        type=int,
        nargs='+',
        default=[36, 300, 1000],
        help='video lengths to run')
    parser.add_argument(
        '--reference',
        type=int,
        help='length of the reference run (default: the model\'s clip '
        'length T)')
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        default=(96, 128),
        metavar=('H', 'W'),
        help='frame size of the synthetic videos')
    parser.add_argument(
        '--mode',
        choices=['stream', 'dense'],
        default='stream',
        help='track_video on the file, or inference_video on all frames')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument(
        '--threads', type=int, help='torch CPU threads (default: torch\'s)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=[],
        metavar='KEY=VALUE',
        help='config overrides, e.g. model.test_cfg.linker.overlap=2')
    # Internal: run one video in this process.
    parser.add_argument('--run', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def write_video(path: str, num_frames: int, size, seed: int = 0) -> None:
    """Coloured squares moving (and bouncing) over noise, as ``.mp4``."""
    h, w = size
    rng = np.random.default_rng(seed)
    num_objects = 3
    pos = rng.uniform(0, 1, (num_objects, 2)) * (h - 20, w - 20)
    vel = rng.uniform(-2, 2, (num_objects, 2))
    colours = rng.integers(40, 255, (num_objects, 3))
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 10,
                             (w, h))
    for _ in range(num_frames):
        frame = rng.integers(60, 120, (h, w, 3), dtype=np.uint8)
        for (y, x), colour in zip(pos.astype(int), colours):
            frame[y:y + 20, x:x + 20] = colour
        writer.write(frame)
        pos += vel
        bounce = (pos < 0) | (pos > (h - 20, w - 20))
        vel[bounce] *= -1
        pos = np.clip(pos, 0, (h - 20, w - 20))
    writer.release()


def _options(pairs):
    """``KEY=VALUE`` strings as a dict, values parsed as ``--cfg-options``
    parses them (numbers, booleans, None, lists)."""
    from mmengine.config import DictAction
    return {
        key: DictAction._parse_iterable(value)
        for key, value in (pair.split('=', 1) for pair in pairs)
    }


def run_one(args) -> dict:
    """Run the video ``args.run`` in this process and measure it."""
    import torch

    from mmttsrn.apis import inference_video, init_model
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings('ignore')
    model = init_model(args.config, args.checkpoint, args.device,
                       _options(args.cfg_options))
    rss_model = _rss_now()
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    if args.mode == 'stream':
        from mmttsrn.apis import track_video
        num_frames = len(track_video(model, args.run))
    else:
        reader = cv2.VideoCapture(args.run)
        frames = []
        ok, frame = reader.read()
        while ok:
            frames.append(frame)
            ok, frame = reader.read()
        num_frames = len(inference_video(model, frames))
    seconds = time.perf_counter() - start
    cpu_seconds = _cpu_seconds() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(
        frames=num_frames,
        mode=args.mode,
        peak_rss_mb=round(peak, 1),
        model_rss_mb=round(rss_model, 1),
        seconds=round(seconds, 2),
        cpu_seconds=round(cpu_seconds, 2),
        frames_per_second=round(num_frames / seconds, 2))


def _cpu_seconds() -> float:
    """CPU time of this process so far (user and system, all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_now() -> float:
    """Resident memory of this process now, in MiB (Linux)."""
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE') / 2**20


def clip_length(config: str, cfg_options) -> int:
    """The model's clip length T."""
    from mmengine.config import Config

    from mmttsrn.utils import sync_num_frames
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(cfg_options)
    sync_num_frames(cfg)
    return cfg.model.track_head.num_frames


def main(argv=None):
    args = parse_args(argv)
    if args.run:
        print(json.dumps(run_one(args)))
        return
    options = _options(args.cfg_options)
    reference = args.reference or clip_length(args.config, options)
    forwarded = [args.config, '--mode', args.mode, '--device', args.device]
    if args.cfg_options:
        forwarded += ['--cfg-options', *args.cfg_options]
    if args.checkpoint:
        forwarded += ['--checkpoint', args.checkpoint]
    if args.threads:
        forwarded += ['--threads', str(args.threads)]
    ref_peak = None
    with tempfile.TemporaryDirectory() as tmp:
        for num_frames in [reference, *args.frames]:
            path = osp.join(tmp, f'{num_frames}.mp4')
            write_video(path, num_frames, args.size)
            out = subprocess.run(
                [sys.executable, __file__, *forwarded, '--run', path],
                check=True,
                capture_output=True,
                text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            ref_peak = ref_peak or result['peak_rss_mb']
            result.update(
                size=list(args.size),
                reference_frames=reference,
                peak_over_reference=round(result['peak_rss_mb'] / ref_peak,
                                          3))
            print(json.dumps(result), flush=True)


if __name__ == '__main__':
    main()
