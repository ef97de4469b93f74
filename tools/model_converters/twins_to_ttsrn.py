"""Convert a Twins-SVT ImageNet checkpoint into TT-SRN backbone weights.

Takes timm's and the official (Meituan-AutoML) Twins checkpoints, bare or
wrapped (``{'model': ...}``, ``{'state_dict': ...}``, ``module.``
prefixes); see :func:`mmttsrn.models.backbones.twins.convert_twins_state_dict`.
The classifier (``head.*``) and the final ``norm.*`` are dropped and every
other key gets the ``backbone.`` prefix. Example::

    python tools/model_converters/twins_to_ttsrn.py \
        checkpoints/twins_svt_small.pth checkpoints/twins_svt_small_ttsrn.pth

The output ``{'state_dict': ..., 'meta': ...}`` holds plain tensors and works
both as a model's ``load_from`` and as the backbone's
``init_cfg=dict(type='Pretrained', checkpoint=...)`` (which strips the
``backbone.`` prefix again).
SRC is read with ``weights_only=True``; a training checkpoint of the
official code that pickles other Python objects is refused unless
``--unsafe-load`` is given.
"""
import argparse
import os
import os.path as osp
from collections.abc import Mapping
from typing import Dict, List, Optional

import torch
from torch import Tensor

from mmttsrn.engine import load_pretrained_file
from mmttsrn.models.backbones.twins import convert_twins_state_dict

PREFIX = 'backbone.'


def load_twins_checkpoint(path: str, allow_unsafe: bool = False) -> Mapping:
    """Read a Twins checkpoint file (any wrapping).

    Only tensors are unpickled unless ``allow_unsafe``.
    """
    return load_pretrained_file(path, 'Twins', allow_unsafe)


def convert_twins(checkpoint: Mapping) -> Dict[str, Tensor]:
    """Twins checkpoint -> ``backbone.*`` keys of a TT-SRN model."""
    state_dict = convert_twins_state_dict(checkpoint)
    if not any(k.startswith('patch_embeds.') for k in state_dict):
        raise KeyError('not a Twins checkpoint: no patch_embeds.* keys '
                       f'(first keys: {sorted(state_dict)[:5]})')
    return {PREFIX + k: v.clone() for k, v in state_dict.items()}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert a Twins-SVT checkpoint to TT-SRN backbone keys')
    parser.add_argument('src', help='Twins checkpoint (.pth)')
    parser.add_argument('dst', help='output checkpoint (.pth)')
    parser.add_argument(
        '--unsafe-load',
        action='store_true',
        help='also read a SRC that pickles Python objects besides tensors '
        '(e.g. training arguments) with weights_only=False; unpickling runs '
        'code, so only for a file you trust')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    converted = convert_twins(
        load_twins_checkpoint(args.src, args.unsafe_load))
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    meta = dict(converted_from='Twins-SVT', source=osp.basename(args.src))
    torch.save(dict(state_dict=converted, meta=meta), args.dst)
    num_stages = len({
        k.split('.')[2]
        for k in converted if k.startswith(PREFIX + 'patch_embeds.')
    })
    print(f'converted {len(converted)} tensors of {num_stages} stages to '
          f'{PREFIX}*; saved {args.dst}')


if __name__ == '__main__':
    main()
