"""Train a TT-SRN model: ``python tools/train.py CONFIG [--work-dir DIR]``."""
import argparse
import logging
import os
import os.path as osp

from mmengine.config import DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import find_latest_checkpoint

from mmttsrn.compat import init_cpu_process_group
from mmttsrn.engine import TTSRNRunner
from mmttsrn.utils import load_tool_config


def parse_args():
    parser = argparse.ArgumentParser(description='Train a TT-SRN model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by total batch size / '
        'auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or without a value from the '
        'latest checkpoint in the work dir (if there is none, training '
        'starts as without --resume)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. train_cfg.max_epochs=2')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def resume_latest(cfg) -> None:
    """``--resume`` without a path: the work dir's latest checkpoint.

    A requeued cluster job passes ``--resume`` on every start, so an empty
    work dir is not an error: training then starts as it would without
    ``--resume`` (keeping the config's ``load_from``), and says so.
    """
    latest = find_latest_checkpoint(cfg.work_dir)
    if latest is None:
        start = (f'from load_from={cfg.load_from}'
                 if cfg.get('load_from') else 'from scratch')
        print_log(
            f'--resume: no checkpoint found in {cfg.work_dir}; training '
            f'starts {start}',
            logger='current',
            level=logging.WARNING)
        cfg.resume = False
        return
    if not osp.isfile(latest):
        raise FileNotFoundError(
            f'--resume: {osp.join(cfg.work_dir, "last_checkpoint")} names '
            f'{latest}, which does not exist; pass --resume CHECKPOINT')
    cfg.resume = True
    cfg.load_from = latest


def main():
    args = parse_args()
    cfg = load_tool_config(args.config, args.launcher, args.cfg_options,
                           args.work_dir)

    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in \
                cfg.auto_scale_lr:
            raise KeyError('--auto-scale-lr needs `auto_scale_lr = dict('
                           'base_batch_size=...)` in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        resume_latest(cfg)
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    init_cpu_process_group(cfg)
    runner_cls = RUNNERS.get(cfg.runner_type) if 'runner_type' in cfg \
        else TTSRNRunner
    runner = runner_cls.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
