"""Test a TT-SRN model.

On a split with annotations it prints AP, AP50, AP75, AR1 and AR10. It
always writes ``results.json`` and the zip the YouTube-VIS server takes, to
``test_evaluator.outfile_prefix`` (default ``<work_dir>/results``); use
``--format-only`` for the server's valid/test splits, which have no
annotations.

Videos are read a frame at a time as the model's windows need them
(``LazyVideoFrames``), and each frame's masks are kept as RLE, so memory does
not grow with a video's length (``--show-dir`` needs dense masks, so with it
each video is loaded whole).
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import DictAction
from mmengine.evaluator import DumpResults
from mmengine.registry import RUNNERS

from mmttsrn.compat import init_cpu_process_group
from mmttsrn.engine import TTSRNRunner, check_checkpoint_file
from mmttsrn.utils import load_tool_config


def parse_args():
    parser = argparse.ArgumentParser(description='Test a TT-SRN model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where metrics and results go')
    parser.add_argument(
        '--out', help='also dump the raw predictions to this .pkl file')
    parser.add_argument(
        '--format-only',
        action='store_true',
        help='do not evaluate (for splits without annotations); only write '
        'results.json and its zip for the evaluation server')
    parser.add_argument(
        '--show-dir',
        help='draw the predictions of each frame into this dir (loads each '
        'video whole)')
    parser.add_argument(
        '--dtype',
        choices=['fp32', 'bf16', 'fp16'],
        default='fp32',
        help='run the model under torch.autocast with this dtype (mmengine '
        "TestLoop's fp16 switch); the CPU takes bf16 only")
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. '
        'test_evaluator.outfile_prefix=out/results')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def read_lazily(dataset: dict) -> None:
    """Wrap a video dataset's test pipeline in ``LazyVideoFrames``."""
    pipeline = dataset.get('pipeline')
    if pipeline and pipeline[0].get('type') != 'LazyVideoFrames':
        dataset.pipeline = [
            dict(type='LazyVideoFrames', frame_pipeline=pipeline)
        ]


def use_autocast(cfg, dtype: str) -> None:
    """Run the test loop under ``torch.autocast`` with ``dtype`` (bf16 or
    fp16): mmengine's ``TestLoop(fp16=True)`` opens autocast with the
    device's autocast dtype (always bf16 on the CPU), which is set here."""
    if torch.cuda.is_available():
        torch.set_autocast_dtype(
            'cuda', dict(bf16=torch.bfloat16, fp16=torch.float16)[dtype])
    cfg.test_cfg.fp16 = True


def main():
    args = parse_args()
    # Checked before the model and data are built, to fail fast.
    if args.dtype == 'fp16' and not torch.cuda.is_available():
        raise ValueError('--dtype fp16 needs a GPU: autocast on the CPU '
                         'runs bf16 only')
    check_checkpoint_file(args.checkpoint)
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options,
                           args.work_dir)
    cfg.load_from = args.checkpoint
    if args.dtype != 'fp32':
        use_autocast(cfg, args.dtype)

    if args.format_only:
        cfg.test_evaluator.format_only = True
    if not cfg.test_evaluator.get('outfile_prefix'):
        cfg.test_evaluator.outfile_prefix = osp.join(cfg.work_dir, 'results')
    if args.show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            raise KeyError('--show-dir needs default_hooks.visualization '
                           '(TrackVisualizationHook) in the config')
        hook.update(draw=True, test_out_dir=args.show_dir)
    else:
        read_lazily(cfg.test_dataloader.dataset)

    init_cpu_process_group(cfg)
    runner_cls = RUNNERS.get(cfg.runner_type) if 'runner_type' in cfg \
        else TTSRNRunner
    runner = runner_cls.from_cfg(cfg)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl file, got {args.out}')
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    runner.test()
    prefix = cfg.test_evaluator.outfile_prefix
    print(f'results: {prefix}.json, submission: '
          f'{prefix}.submission_file.zip')


if __name__ == '__main__':
    main()
