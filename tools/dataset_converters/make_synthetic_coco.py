"""Write still images of the synthetic shapes as a COCO-format set.

``python tools/dataset_converters/make_synthetic_coco.py --out
data/synthetic_coco --num-images 240 --seed 0``

writes ``<out>/train/*.jpg`` and ``<out>/annotations/instances_train.json``
with the categories of the synthetic video dataset, for joint training with
``ImagePseudoVideoDataset`` (``configs/ttsrn/ttsrn_synthetic_coco_joint.py``).
"""
import argparse
import time
from typing import List, Optional

from mmttsrn.datasets.synthetic_images import make_synthetic_coco


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Make a COCO-format set of still images of the '
        'synthetic shapes.')
    parser.add_argument(
        '--out', default='data/synthetic_coco', help='dataset root to write')
    parser.add_argument(
        '--num-images', type=int, default=200, help='images to write')
    parser.add_argument(
        '--split',
        default='train',
        help='image folder and annotation file name (instances_SPLIT.json)')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        default=(64, 128),
        metavar=('MIN', 'MAX'),
        help='image height and width in pixels, inclusive range')
    parser.add_argument(
        '--colour',
        choices=('category', 'instance'),
        default='category',
        help='category: one colour family per category; instance: a random '
        'colour per shape')
    parser.add_argument(
        '--max-instances', type=int, default=3, help='shapes per image')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace the files of an earlier run')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    ann_file = make_synthetic_coco(
        args.out,
        num_images=args.num_images,
        split=args.split,
        seed=args.seed,
        size_range=args.size,
        max_instances=args.max_instances,
        colour=args.colour,
        overwrite=args.overwrite)
    print(f'wrote {args.num_images} images in '
          f'{time.perf_counter() - start:.1f}s: {ann_file}')


if __name__ == '__main__':
    main()
