"""Time a video instance segmentation model on a random clip.

Builds each model from its config with random weights (every weight
download in the config is dropped), feeds it one random clip
``(1, T, 3, H, W)`` that is already normalised and padded to the model's
``pad_size_divisor``, with synthetic ``TrackDataSample`` meta information,
and times ``predict`` (model forward and post-processing, no data loading,
as the paper measures FPS) or, with ``--train``, one training iteration
(loss, backward and optimizer step on fake ground truth).

Prints one JSON line per model (``frames_per_second`` is the median over the
repeats); with ``--compare`` both models run in the same process, alternating
run by run, and a last JSON line gives ``fps_ratio`` (model 1 / model 2).

Example, TT-SRN against mmdet's Mask2Former-VIS R50 at the paper's size::

    python tools/analysis_tools/benchmark.py configs/ttsrn/ttsrn_yvis.py \\
        --compare \\
        mmdet::mask2former_vis/mask2former_r50_8xb2-8e_youtubevis2019.py \\
        --frames 36 --size 300 540 --device cpu --repeats 3
"""
import argparse
import copy
import gc
import json
import math
import os
import os.path as osp
import platform
import re
import resource
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import numpy as np
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, TrackDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config, DictAction
from mmengine.hub import get_config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from mmttsrn.engine import keep_freed_memory
from mmttsrn.utils import sync_num_frames

DTYPES = dict(fp32=None, bf16=torch.bfloat16, fp16=torch.float16)
# Submodules that ``--compile`` wraps in ``torch.compile`` when present (a
# ModuleList: each of its modules). ``torch.compile`` compiles a module's
# ``forward`` only, so each target is one whose ``forward`` the model calls:
# TT-SRN's head calls its clip transformer's ``encode``/``decode`` (which call
# the encoder and decoder) and Mask2Former's head calls its transformer
# decoder's layers one by one.
COMPILE_TARGETS = ('backbone', 'track_head.transformer.encoder',
                   'track_head.transformer.decoder', 'track_head.mask_head',
                   'track_head.pixel_decoder',
                   'track_head.transformer_decoder.layers')
# Used when a config has no ``optim_wrapper`` (``--train`` only).
DEFAULT_OPTIM_WRAPPER = dict(
    type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Time predict (or one training iteration) of a video '
        'instance segmentation model on a random clip')
    parser.add_argument(
        'config', help='config file, or package::path (e.g. mmdet::...)')
    parser.add_argument(
        '--compare', help='a second config, run in the same process')
    parser.add_argument(
        '--frames', type=int, default=36, help='frames T of the clip')
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        default=(300, 540),
        metavar=('H', 'W'),
        help='frame size before padding to pad_size_divisor')
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='cpu, cuda or cuda:N')
    parser.add_argument(
        '--dtype',
        choices=list(DTYPES),
        default='fp32',
        help='bf16/fp16 run under torch.autocast (no loss scaling in '
        '--train: for timing only)')
    parser.add_argument(
        '--warmup', type=int, default=2, help='untimed runs per model')
    parser.add_argument(
        '--repeats', type=int, default=5, help='timed runs per model')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile the backbone, the transformer and (TT-SRN) '
        'the mask head')
    parser.add_argument(
        '--train',
        action='store_true',
        help='time one training iteration on fake ground truth instead of '
        'predict; the head is built for --frames frames')
    parser.add_argument(
        '--num-gts',
        type=int,
        default=3,
        help='instances per frame of the fake ground truth (--train)')
    parser.add_argument(
        '--profile',
        type=int,
        default=0,
        metavar='N',
        help='after timing, profile one more run of each model with '
        'torch.profiler and print its N most expensive ops to stderr')
    parser.add_argument(
        '--keep-freed-memory',
        action='store_true',
        help='let glibc malloc reuse freed memory for both models, as '
        'tools/train.py and tools/test.py do on a CPU with '
        'env_cfg.keep_freed_memory=True (fewer page faults, higher '
        'resident memory)')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of weights and data')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of CONFIG, e.g. model.test_cfg.score_thr=0.1')
    parser.add_argument(
        '--compare-cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the --compare config')
    args = parser.parse_args(argv)
    if args.frames < 1 or min(args.size) < 1:
        parser.error(f'--frames and --size must be positive, got '
                     f'{args.frames} and {args.size}')
    if args.repeats < 1 or args.warmup < 0:
        parser.error(f'--repeats must be >= 1 and --warmup >= 0, got '
                     f'{args.repeats} and {args.warmup}')
    if args.num_gts < 1:
        parser.error(f'--num-gts must be >= 1, got {args.num_gts}')
    return args


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read a config file or a ``package::path`` config of an installed
    OpenMMLab package."""
    if '::' in path:
        cfg = get_config(path)
    elif not osp.isfile(path):
        raise FileNotFoundError(f'config file {path} does not exist')
    else:
        cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    sync_num_frames(cfg)
    if 'model' not in cfg:
        raise KeyError(f'config {path} has no "model"')
    return cfg


def _loads_weights(init_cfg) -> bool:
    return isinstance(init_cfg, dict) and (init_cfg.get('type') == 'Pretrained'
                                           or 'checkpoint' in init_cfg)


def strip_pretrained(cfg) -> None:
    """Drop, in place, every init config that loads weights (URLs,
    ``torchvision://``, files) and every ``pretrained`` path, so the model
    builds offline with random weights."""
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key == 'pretrained' and isinstance(value, str):
                cfg[key] = None
            elif key == 'init_cfg' and isinstance(value, (list, tuple)):
                kept = [c for c in value if not _loads_weights(c)]
                cfg[key] = kept or None
            elif key == 'init_cfg' and _loads_weights(value):
                cfg[key] = None
            else:
                strip_pretrained(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            strip_pretrained(value)


def padded_size(size, divisor: int):
    """(H, W) rounded up to a multiple of ``divisor``."""
    divisor = max(int(divisor or 1), 1)
    return tuple(int(math.ceil(s / divisor)) * divisor for s in size)


def num_classes_of(model) -> int:
    for owner in (model, getattr(model, 'track_head', None)):
        num_classes = getattr(owner, 'num_classes', None)
        if isinstance(num_classes, int) and num_classes > 0:
            return num_classes
    return 1


def make_samples(frames: int,
                 size,
                 pad_size,
                 device,
                 num_gts: int = 0,
                 num_classes: int = 1) -> List[TrackDataSample]:
    """One synthetic video's ``TrackDataSample`` as the data preprocessor
    leaves it (meta information of every frame; fake ground truth of
    ``num_gts`` boxes moving across the frames when ``num_gts > 0``)."""
    (h, w), (pad_h, pad_w) = size, pad_size
    frame_samples = []
    for t in range(frames):
        sample = DetDataSample(
            metainfo=dict(
                img_path=f'video_0/{t:05d}.jpg',
                img_id=t,
                video_id=0,
                frame_id=t,
                video_length=frames,
                ori_video_length=frames,
                ori_shape=(h, w),
                img_shape=(h, w),
                pad_shape=(pad_h, pad_w),
                batch_input_shape=(pad_h, pad_w),
                scale_factor=(1.0, 1.0)))
        if num_gts:
            sample.gt_instances = _fake_gts(t, frames, num_gts, num_classes,
                                            (h, w), (pad_h, pad_w), device)
        frame_samples.append(sample)
    video = TrackDataSample()
    video.video_data_samples = frame_samples
    return [video]


def _fake_gts(t, frames, num_gts, num_classes, size, pad_size, device):
    """Boxes of a quarter of the frame, spread out, drifting right."""
    (h, w), (pad_h, pad_w) = size, pad_size
    box_h, box_w = max(h // 4, 1), max(w // 4, 1)
    ids = np.arange(num_gts)
    x0 = (ids * (w - box_w) // max(num_gts, 1) + t * (w - box_w) //
          (4 * frames)) % max(w - box_w, 1)
    y0 = ids * (h - box_h) // max(num_gts, 1)
    boxes = np.stack([x0, y0, x0 + box_w, y0 + box_h], 1).astype(np.float32)
    masks = np.zeros((num_gts, pad_h, pad_w), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        masks[k, y1:y2, x1:x2] = 1
    return InstanceData(
        bboxes=torch.from_numpy(boxes).to(device),
        labels=torch.as_tensor(ids % num_classes, device=device),
        instances_ids=torch.as_tensor(ids, device=device),
        masks=BitmapMasks(masks, pad_h, pad_w))


def make_clip(frames, size, pad_size, device, seed) -> torch.Tensor:
    """A normalised random clip (1, T, 3, H_pad, W_pad), zero padded."""
    gen = torch.Generator().manual_seed(seed)
    clip = torch.zeros(1, frames, 3, *pad_size)
    clip[..., :size[0], :size[1]] = torch.randn(
        1, frames, 3, *size, generator=gen)
    return clip.to(device)


class MemoryMeter:
    """Peak memory of one run above what was allocated before it (so, with
    ``--compare``, not counting the other model): from
    ``torch.cuda.max_memory_allocated`` on GPU; on CPU from the peak resident
    set size (the kernel's peak is reset through ``/proc/self/clear_refs``;
    where that is not possible, the process's lifetime ``ru_maxrss`` is
    reported as is)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == 'cuda':
            self.kind = 'cuda_max_memory_allocated_delta'
        elif self._reset_cpu_peak():
            self.kind = 'cpu_peak_rss_delta'
        else:
            self.kind = 'cpu_process_max_rss'
        self._start = 0.0

    @staticmethod
    def _reset_cpu_peak() -> bool:
        try:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
            return True
        except OSError:
            return False

    @staticmethod
    def _status_mb(key: str) -> float:
        with open('/proc/self/status') as f:
            return int(re.search(key + r':\s+(\d+)', f.read()).group(1)) / 1024

    def start(self) -> None:
        if self.kind == 'cuda_max_memory_allocated_delta':
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device) / 2**20
        elif self.kind == 'cpu_peak_rss_delta':
            self._reset_cpu_peak()
            self._start = self._status_mb('VmRSS')

    def peak_mb(self) -> float:
        if self.kind == 'cuda_max_memory_allocated_delta':
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            return peak - self._start
        if self.kind == 'cpu_peak_rss_delta':
            return self._status_mb('VmHWM') - self._start
        # ru_maxrss is in KiB on Linux.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Bench:
    """One model under test; ``step`` runs on fresh samples."""
    name: str
    model: torch.nn.Module
    step: Callable
    new_samples: Callable
    cfg_options: Optional[dict] = None
    compiled: List[str] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)
    peak_mb: float = 0.0


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def build_model(cfg: Config, args, device: torch.device) -> torch.nn.Module:
    """The config's model with random weights, on ``device``."""
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model_cfg = copy.deepcopy(cfg.model)
    strip_pretrained(model_cfg)
    track_head = model_cfg.get('track_head')
    if args.train and isinstance(track_head, dict) and \
            'num_frames' in track_head:
        # Training clips have exactly the head's frame count.
        track_head['num_frames'] = args.frames
    torch.manual_seed(args.seed)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model.to(device).train(args.train)


def compile_submodules(model: torch.nn.Module) -> List[str]:
    """Wrap the model's :data:`COMPILE_TARGETS` in ``torch.compile`` in
    place; return the names of the modules wrapped."""
    compiled = []
    for target in COMPILE_TARGETS:
        *path, name = target.split('.')
        owner = model
        for attr in path:
            owner = getattr(owner, attr, None)
        module = getattr(owner, name, None)
        if isinstance(module, torch.nn.ModuleList):
            for i, layer in enumerate(module):
                module[i] = torch.compile(layer)
                compiled.append(f'{target}.{i}')
        elif isinstance(module, torch.nn.Module):
            setattr(owner, name, torch.compile(module))
            compiled.append(target)
    return compiled


def make_bench(config: str, cfg_options, args, device: torch.device) -> Bench:
    cfg = load_config(config, cfg_options)
    model = build_model(cfg, args, device)
    compiled = compile_submodules(model) if args.compile else []
    divisor = cfg.model.get('data_preprocessor', {}).get('pad_size_divisor', 1)
    size = tuple(args.size)
    pad_size = padded_size(size, divisor)
    inputs = make_clip(args.frames, size, pad_size, device, args.seed)
    num_gts = args.num_gts if args.train else 0
    num_classes = num_classes_of(model)

    def new_samples():
        return make_samples(args.frames, size, pad_size, device, num_gts,
                            num_classes)

    dtype = DTYPES[args.dtype]

    def autocast():
        return (torch.autocast(device.type, dtype=dtype)
                if dtype else nullcontext())

    if args.train:
        optim_wrapper = build_optim_wrapper(
            model, cfg.get('optim_wrapper', DEFAULT_OPTIM_WRAPPER))

        def step(samples):
            with autocast():
                losses = model.loss(inputs, samples)
            loss, _ = model.parse_losses(losses)
            optim_wrapper.update_params(loss)
    else:

        @torch.no_grad()
        def step(samples):
            with autocast():
                return model.predict(inputs, samples)

    return Bench(config, model, step, new_samples, cfg_options, compiled)


def run_once(bench: Bench, device: torch.device, meter: MemoryMeter,
             record: bool) -> None:
    samples = bench.new_samples()
    gc.collect()
    meter.start()
    _synchronize(device)
    start = time.perf_counter()
    bench.step(samples)
    _synchronize(device)
    elapsed = time.perf_counter() - start
    bench.peak_mb = max(bench.peak_mb, meter.peak_mb())
    if record:
        bench.seconds.append(elapsed)


def profile_once(bench: Bench, device: torch.device, row_limit: int) -> str:
    """Top ``row_limit`` ops (by self time) of one more run."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    sort_by = 'self_cpu_time_total'
    if device.type == 'cuda':
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        sort_by = 'self_cuda_time_total'
    samples = bench.new_samples()
    with torch.profiler.profile(
            activities=activities, record_shapes=True) as prof:
        bench.step(samples)
        _synchronize(device)
    return prof.key_averages(group_by_input_shape=True).table(
        sort_by=sort_by, row_limit=row_limit)


def device_name(device: torch.device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        with open('/proc/cpuinfo') as f:
            match = re.search(r'model name\s*:\s*(.*)', f.read())
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def summary(bench: Bench, args, device: torch.device, meter: MemoryMeter,
            load_avg) -> dict:
    fps = [args.frames / s for s in bench.seconds]
    q25, q75 = np.percentile(fps, [25, 75])
    return dict(
        config=bench.name,
        model=type(bench.model).__name__,
        mode='train' if args.train else 'predict',
        frames_per_second=statistics.median(fps),
        fps_min=min(fps),
        fps_max=max(fps),
        fps_iqr=float(q75 - q25),
        seconds_per_clip=statistics.median(bench.seconds),
        seconds=bench.seconds,
        peak_memory_mb=bench.peak_mb,
        memory_kind=meter.kind,
        parameters=sum(p.numel() for p in bench.model.parameters()),
        weights_mb=sum(t.numel() * t.element_size()
                       for t in (*bench.model.parameters(),
                                 *bench.model.buffers())) / 2**20,
        device=str(device),
        device_name=device_name(device),
        dtype=args.dtype,
        compile=args.compile,
        compiled=bench.compiled,
        cfg_options=bench.cfg_options,
        frames=args.frames,
        size=list(args.size),
        warmup=args.warmup,
        repeats=args.repeats,
        threads=torch.get_num_threads(),
        keep_freed_memory=args.keep_freed_memory,
        torch=torch.__version__,
        load_average=list(load_avg))


def main(argv=None) -> List[dict]:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(f'--device {args.device}: CUDA is not available')
    if args.keep_freed_memory and not keep_freed_memory():
        raise RuntimeError('--keep-freed-memory needs glibc (Linux)')
    benches = [make_bench(args.config, args.cfg_options, args, device)]
    if args.compare:
        benches.append(
            make_bench(args.compare, args.compare_cfg_options, args, device))
    meter = MemoryMeter(device)
    load_avg = os.getloadavg()
    # Alternate the models run by run so that load changes hit both alike.
    for i in range(args.warmup + args.repeats):
        for bench in benches:
            run_once(bench, device, meter, record=i >= args.warmup)
    records = [summary(b, args, device, meter, load_avg) for b in benches]
    if args.compare:
        records.append(
            dict(
                compare=[b.name for b in benches],
                fps_ratio=records[0]['frames_per_second'] /
                records[1]['frames_per_second']))
    for record in records:
        print(json.dumps(record), flush=True)
    if args.profile:
        for bench in benches:
            print(
                f'profile of {bench.name}:\n' +
                profile_once(bench, device, args.profile),
                file=sys.stderr,
                flush=True)
    return records


if __name__ == '__main__':
    main()
