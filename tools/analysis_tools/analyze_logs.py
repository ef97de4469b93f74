"""Plot training curves from mmengine's JSON scalar logs.

mmengine writes one JSON object per line to
``<work_dir>/<timestamp>/vis_data/scalars.json``: training lines carry
``iter`` (and ``epoch``), the losses, ``lr`` and ``step`` (the global
iteration); validation lines carry the metrics (e.g.
``youtube_vis/segm_mAP``) and ``step`` (the epoch for epoch-based training).
Example::

    python tools/analysis_tools/analyze_logs.py plot_curve \
        work_dirs/ttsrn_synthetic --keys loss loss_cls youtube_vis/segm_mAP \
        --out curves.png

Training keys are plotted against the iteration, validation keys against
the epoch (or iteration), each group in its own panel. With ``--x time``
both are plotted against the training time in minutes instead, e.g. the AP
of two models trained on the same CPU::

    python tools/analysis_tools/analyze_logs.py plot_curve \
        work_dirs/ttsrn_synthetic work_dirs/mask2former_vis_r18_synthetic \
        --keys youtube_vis/segm_mAP --legend TT-SRN Mask2Former-VIS \
        --x time --out ap_vs_time.png

The training time is rebuilt from the training lines (see
:func:`cumulative_time`): validation, checkpointing and start-up are not
counted.
"""
import argparse
import glob
import json
import os.path as osp
from typing import Dict, List, Optional

import matplotlib

matplotlib.use('Agg')  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

# Validation panels with at most this many points get a tick on each.
MAX_TICKS = 20


def find_log(path: str) -> str:
    """A JSON log file itself, or the newest ``scalars.json`` under a run or
    work dir."""
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise FileNotFoundError(f'log file or work dir {path} does not exist')
    candidates = sorted(
        glob.glob(osp.join(path, 'vis_data', 'scalars.json')) +
        glob.glob(osp.join(path, '*', 'vis_data', 'scalars.json')))
    if not candidates:
        raise FileNotFoundError(
            f'no vis_data/scalars.json in {path} or its run folders')
    # Run folders are named by start time, so the last one is the newest.
    return candidates[-1]


def load_log(path: str) -> Dict[str, List[dict]]:
    """Split a JSON log into training and validation lines.

    Returns:
        dict: ``train`` and ``val`` lists of the parsed lines, in order.
    """
    lines = dict(train=[], val=[])
    with open(path) as f:
        for num, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f'{path} line {num} is not JSON: {err}') from err
            if not isinstance(record, dict) or 'step' not in record:
                raise ValueError(f'{path} line {num} is not an mmengine '
                                 'scalar record (a JSON object with "step")')
            lines['train' if 'iter' in record else 'val'].append(record)
    return lines


def curve(lines: List[dict], key: str) -> tuple:
    """The (steps, values) of ``key`` over the lines that have it."""
    points = [(line['step'], line[key]) for line in lines if key in line]
    return tuple(zip(*points)) if points else ((), ())


def epoch_length(train_lines: List[dict]) -> Optional[int]:
    """Iterations per epoch of an epoch-based log, or None if unknown.

    The logger writes a line every ``interval`` iterations of an epoch
    (counted from the epoch's start), so the first lines of two consecutive
    epochs are one epoch apart, also when the epoch's last iterations are
    not logged (``LoggerHook(ignore_last=True)``).
    """
    firsts = {}
    for line in train_lines:
        if 'epoch' in line:
            firsts.setdefault(line['epoch'], line['step'])
    gaps = {
        firsts[e + 1] - firsts[e]
        for e in firsts if e + 1 in firsts
    }
    return gaps.pop() if len(gaps) == 1 else None


def cumulative_time(train_lines: List[dict]) -> tuple:
    """The (steps, seconds) of training time at each training line.

    A line's ``time`` is the mean time of an iteration (data loading
    included) over the logger's window; it is counted for every iteration
    since the previous line. That is exact when ``log_processor.window_size``
    equals the logger's ``interval`` and a moving average otherwise. A log
    of a resumed run starts at its first epoch's start (0 if unknown).
    """
    if not train_lines:
        return (), ()
    length = epoch_length(train_lines)
    first = train_lines[0]
    previous = (first['epoch'] - 1) * length if length and 'epoch' in first \
        else 0
    steps, seconds, total = [], [], 0.0
    for line in train_lines:
        if 'time' not in line:
            raise KeyError(f'training line at step {line["step"]} has no '
                           '"time" (is IterTimerHook off?): no time axis')
        total += line['time'] * (line['step'] - previous)
        previous = line['step']
        steps.append(line['step'])
        seconds.append(total)
    return tuple(steps), tuple(seconds)


def time_at(train_lines: List[dict], iteration: float) -> float:
    """The training time in seconds at the end of ``iteration``: between
    two logged lines at the later line's time per iteration, after the last
    one at the last line's."""
    steps, seconds = cumulative_time(train_lines)
    if not steps:
        raise ValueError('no training lines: no time axis')
    for k, step in enumerate(steps):
        if step >= iteration:
            break
    # The line that covers `iteration`, or the last one.
    return seconds[k] - train_lines[k]['time'] * (step - iteration)


def time_curve(lines: Dict[str, List[dict]], phase: str, key: str) -> tuple:
    """The (minutes, values) of ``key``: a training point at the time of its
    line, a validation point at the time its training iterations took (for
    an epoch-based log the end of its epoch)."""
    steps, values = curve(lines[phase], key)
    train = lines['train']
    if phase == 'val' and any('epoch' in line for line in train):
        length = epoch_length(train)
        ends = {}
        for line in train:
            ends[line['epoch']] = line['step']  # the last logged, if unknown
        missing = [epoch for epoch in steps if epoch not in ends]
        if missing and not length:
            raise ValueError(f'no training lines of epochs {missing}: '
                             'their end is unknown')
        iters = [epoch * length if length else ends[epoch]
                 for epoch in steps]
    else:
        iters = steps
    minutes = tuple(time_at(train, n) / 60 for n in iters)
    return minutes, values


def plot_curve(args: argparse.Namespace) -> None:
    logs = [find_log(path) for path in args.logs]
    legends = args.legend or logs
    if len(legends) != len(logs):
        raise ValueError(f'{len(legends)} --legend names for {len(logs)} '
                         'logs')
    data = [load_log(log) for log in logs]

    # Each key goes to the panel of the lines it was logged in.
    panels = dict(train=[], val=[])
    for key in args.keys:
        phase = next((p for p in ('train', 'val') if any(
            curve(d[p], key)[0] for d in data)), None)
        if phase is None:
            available = sorted({
                k
                for d in data
                for p in d.values()
                for line in p
                for k in line
            } - {'step'})
            raise KeyError(f'key {key!r} is in none of {logs}; available: '
                           f'{available}')
        panels[phase].append(key)
    panels = {p: keys for p, keys in panels.items() if keys}

    by_epoch = any('epoch' in line for d in data for line in d['train'])
    xlabels = dict(train='iter', val='epoch' if by_epoch else 'iter')
    if args.x == 'time':
        xlabels = dict(
            train='training time (min)', val='training time (min)')
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(8, 4 * len(panels)), squeeze=False)
    for ax, (phase, keys) in zip(axes[:, 0], panels.items()):
        all_steps = set()
        for d, legend in zip(data, legends):
            for key in keys:
                if args.x == 'time':
                    steps, values = time_curve(d, phase, key)
                else:
                    steps, values = curve(d[phase], key)
                    all_steps.update(steps)
                label = key if len(data) == 1 else f'{legend}: {key}'
                ax.plot(
                    steps,
                    values,
                    marker='o' if phase == 'val' else None,
                    label=label)
        ax.set_xlabel(xlabels[phase])
        if args.x == 'time':
            pass  # matplotlib's ticks for minutes
        elif phase == 'val' and len(all_steps) <= MAX_TICKS:
            # A tick on each validated epoch, also when there is only one.
            ax.set_xticks(sorted(all_steps))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f'{args.title}: {phase}' if args.title else phase)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(f'saved {args.out} (from {", ".join(logs)})')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Analyse JSON logs')
    commands = parser.add_subparsers(dest='command', required=True)
    plot = commands.add_parser('plot_curve', help='plot curves of log keys')
    plot.add_argument(
        'logs',
        nargs='+',
        help='scalars.json files, run folders or work dirs (the newest run)')
    plot.add_argument(
        '--keys',
        nargs='+',
        default=['loss'],
        help='keys to plot, e.g. loss loss_cls youtube_vis/segm_mAP')
    plot.add_argument('--out', required=True, help='output image (.png)')
    plot.add_argument('--title', help='figure title')
    plot.add_argument(
        '--legend', nargs='+', help='a name per log (default: its path)')
    plot.add_argument(
        '--x',
        choices=['step', 'time'],
        default='step',
        help='x-axis: "step" (training keys against the iteration, '
        'validation keys against the epoch or iteration) or "time" (both '
        'against the training time in minutes, rebuilt from the "time" of '
        'the training lines)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    if args.command == 'plot_curve':
        plot_curve(args)


if __name__ == '__main__':
    main()
