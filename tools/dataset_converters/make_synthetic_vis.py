"""Write a synthetic dataset in the official YouTube-VIS format.

``python tools/dataset_converters/make_synthetic_vis.py --out
data/synthetic_vis --num-train 40 --num-val 10 --seed 0``
"""
import argparse
import time
from typing import List, Optional

from mmttsrn.datasets.synthetic import make_synthetic_vis


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Make a synthetic YouTube-VIS-format dataset (shapes '
        'moving over textured backgrounds).')
    parser.add_argument(
        '--out', default='data/synthetic_vis', help='dataset root to write')
    parser.add_argument(
        '--num-train', type=int, default=40, help='train videos')
    parser.add_argument('--num-val', type=int, default=10, help='valid videos')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--frames',
        type=int,
        nargs=2,
        default=(4, 12),
        metavar=('MIN', 'MAX'),
        help='frames per video, inclusive range')
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        default=(64, 128),
        metavar=('MIN', 'MAX'),
        help='frame height (and width, unless --width is given) in pixels, '
        'inclusive range')
    parser.add_argument(
        '--width',
        type=int,
        nargs=2,
        metavar=('MIN', 'MAX'),
        help='frame width in pixels, inclusive range (default: --size)')
    parser.add_argument(
        '--colour',
        choices=('category', 'instance'),
        default='category',
        help='category: one colour family per category (colour gives the '
        'class); instance: a random colour per instance (only the shape '
        'gives the class)')
    parser.add_argument(
        '--max-instances', type=int, default=3, help='instances per video')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace the files of an earlier run (nothing is deleted)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    ann_files = make_synthetic_vis(
        args.out,
        num_train_videos=args.num_train,
        num_val_videos=args.num_val,
        seed=args.seed,
        frames_range=args.frames,
        size_range=args.size,
        width_range=args.width,
        max_instances=args.max_instances,
        colour=args.colour,
        overwrite=args.overwrite)
    print(f'wrote {args.num_train} train and {args.num_val} valid videos '
          f'in {time.perf_counter() - start:.1f}s:')
    for path in ann_files.values():
        print(f'  {path}')


if __name__ == '__main__':
    main()
