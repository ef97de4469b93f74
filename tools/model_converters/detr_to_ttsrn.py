"""Convert a DETR COCO checkpoint into TT-SRN transformer weights.

DETR's public checkpoints hold ``{'model': state_dict}`` with the keys
``transformer.{encoder,decoder}.layers.{i}.*``, ``transformer.decoder.norm.*``,
``query_embed.weight`` (100, 256), ``input_proj.*``, ``class_embed.*``,
``bbox_embed.layers.{0,1,2}.*`` and ``backbone.0.body.*`` (a ResNet).

What is converted:

- ``transformer.*`` -> ``track_head.transformer.*``: our ``ClipTransformer``
  uses DETR's submodule and parameter names, so only the prefix changes;
- ``query_embed.weight`` -> ``track_head.query_embed.weight`` of shape
  (T * n, d): DETR's first n queries tiled over the T frames, so query
  ``t * n + j`` starts as DETR's query ``j`` in every frame.

What is not (and why):

- ``input_proj.*``: it maps DETR's ResNet-50 C5 (2048 channels) to d, while
  our input projection takes the Twins-SVT stage 4 (512 channels);
- ``class_embed.*`` / ``bbox_embed.*``: linear/MLP heads for COCO's 91
  classes, where TT-SRN has SRN heads for the video classes;
- ``backbone.*``: a different backbone (use ``twins_to_ttsrn.py`` for it);
- anything else (e.g. a pre-norm DETR's ``transformer.encoder.norm``).

DETR's width is d = 256 (with 8 heads and 2048-wide FFNs), while the default
TT-SRN config has d = 384: these weights only fit a model of DETR's width,
e.g. ``configs/ttsrn/ttsrn_yvis_detr_init.py``. Pass ``--config`` to check a
config against the checkpoint and take T and n from it. Example::

    python tools/model_converters/detr_to_ttsrn.py \
        checkpoints/detr-r50-e632da11.pth checkpoints/detr_r50_ttsrn.pth \
        --config configs/ttsrn/ttsrn_yvis_detr_init.py

The output ``{'state_dict': ..., 'meta': ...}`` holds plain tensors (it
loads with ``torch.load(weights_only=True)``) and is meant for ``load_from``.
SRC is read with ``weights_only=True``; a training checkpoint that also
pickles DETR's arguments is refused unless ``--unsafe-load`` is given.
"""
import argparse
import logging
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from torch import Tensor

from mmttsrn.engine import load_pretrained_file
from mmttsrn.utils import sync_num_frames

# DETR key prefix -> our key prefix.
RENAMES = {'transformer.': 'track_head.transformer.'}
QUERY_KEY = 'query_embed.weight'
OUR_QUERY_KEY = 'track_head.query_embed.weight'
# Parts of DETR that have no counterpart, with the reason.
SKIPPED = {
    'transformer.encoder.norm.': 'final encoder norm of a pre-norm DETR; '
    'ClipTransformer is post-norm without one',
    'input_proj.': 'projects ResNet C5 (2048 channels), not Twins stage 4',
    'class_embed.': 'COCO class head; TT-SRN has an SRN class head',
    'bbox_embed.': 'DETR box MLP; TT-SRN has an SRN box head',
    'backbone.': 'ResNet backbone (TT-SRN uses Twins-SVT)',
}


def load_detr_state_dict(path: str,
                         allow_unsafe: bool = False) -> Dict[str, Tensor]:
    """Read a DETR checkpoint (``{'model': sd}``, or a bare state dict).

    Only tensors are unpickled unless ``allow_unsafe``.
    """
    checkpoint = load_pretrained_file(path, 'DETR', allow_unsafe)
    state_dict = checkpoint.get('model', checkpoint)
    if QUERY_KEY not in state_dict or not any(
            k.startswith('transformer.') for k in state_dict):
        raise KeyError(f"{path} is not a DETR checkpoint: it has no "
                       f"'{QUERY_KEY}' or 'transformer.*' keys")
    return dict(state_dict)


def detr_dims(state_dict: Dict[str, Tensor]) -> Dict[str, int]:
    """Width, FFN width, layer counts and query count of a DETR state dict.
    """

    def num_layers(part: str) -> int:
        prefix = f'transformer.{part}.layers.'
        return len({
            k[len(prefix):].split('.')[0]
            for k in state_dict if k.startswith(prefix)
        })

    queries = state_dict[QUERY_KEY]
    ffn = state_dict.get('transformer.encoder.layers.0.linear1.weight')
    return dict(
        embed_dims=queries.shape[1],
        num_detr_queries=queries.shape[0],
        feedforward_channels=None if ffn is None else ffn.shape[0],
        num_encoder_layers=num_layers('encoder'),
        num_decoder_layers=num_layers('decoder'))


def convert_detr(
        state_dict: Dict[str, Tensor], num_frames: int,
        num_queries: int) -> Tuple[Dict[str, Tensor], Dict[str, List[str]]]:
    """Map DETR keys to TT-SRN keys.

    Args:
        state_dict (dict[str, Tensor]): DETR's ``model`` state dict.
        num_frames (int): Frames per clip T of the target model.
        num_queries (int): Instance slots per frame n of the target model;
            at most DETR's query count.

    Returns:
        tuple: the converted state dict, and a dict mapping each skipped
        DETR prefix (or ``other``) to the keys left out.
    """
    num_detr = state_dict[QUERY_KEY].shape[0]
    if not 1 <= num_queries <= num_detr:
        raise ValueError(f'num_queries must be in [1, {num_detr}] (DETR has '
                         f'{num_detr} queries), got {num_queries}')
    if num_frames < 1:
        raise ValueError(f'num_frames must be >= 1, got {num_frames}')
    converted, skipped = {}, {}
    for key, value in state_dict.items():
        if key == QUERY_KEY:
            # Row t * n + j = DETR query j, for every frame t.
            converted[OUR_QUERY_KEY] = value[:num_queries].repeat(
                num_frames, 1).clone()
            continue
        group = next((p for p in SKIPPED if key.startswith(p)), None)
        prefix = next((p for p in RENAMES if key.startswith(p)), None)
        if group is None and prefix is not None:
            converted[RENAMES[prefix] + key[len(prefix):]] = value.clone()
        else:
            skipped.setdefault(group or 'other', []).append(key)
    return converted, skipped


def check_config(cfg: Config, dims: Dict[str, int]) -> Tuple[int, int]:
    """Check a TT-SRN config against DETR's sizes; return its (T, n)."""
    head = cfg.model.track_head
    transformer = head.get('transformer', {})
    wanted = dict(
        embed_dims=head.get('embed_dims'),
        feedforward_channels=transformer.get('feedforward_channels'),
        num_encoder_layers=transformer.get('num_encoder_layers'),
        num_decoder_layers=transformer.get('num_decoder_layers'))
    wrong = {
        k: (v, dims[k])
        for k, v in wanted.items()
        if v is not None and dims[k] is not None and v != dims[k]
    }
    if 'embed_dims' in wrong:
        raise ValueError(
            f"the config's transformer width is {wanted['embed_dims']} but "
            f"DETR's is {dims['embed_dims']}: DETR's weights only fit a model "
            "of DETR's width. Use a config with track_head.embed_dims="
            f"{dims['embed_dims']} and a positional encoding whose t, y, x "
            'channels sum to it, such as '
            'configs/ttsrn/ttsrn_yvis_detr_init.py')
    if wrong:
        raise ValueError('the config does not match DETR (config, DETR): '
                         f'{wrong}')
    if transformer.get('num_heads', 8) != 8:
        print_log(
            f"the config's transformer has {transformer['num_heads']} heads "
            "and DETR's has 8: the weights load but split differently",
            logger='current',
            level=logging.WARNING)
    return head.num_frames, head.num_queries


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert a DETR checkpoint to TT-SRN transformer weights')
    parser.add_argument('src', help='DETR checkpoint (.pth)')
    parser.add_argument('dst', help='output checkpoint (.pth)')
    parser.add_argument(
        '--unsafe-load',
        action='store_true',
        help='also read a SRC that pickles Python objects besides tensors '
        '(e.g. training arguments) with weights_only=False; unpickling runs '
        'code, so only for a file you trust')
    parser.add_argument(
        '--config',
        help='TT-SRN config to check against and take T and n from')
    parser.add_argument(
        '--num-frames', type=int, help='frames per clip T (default 36)')
    parser.add_argument(
        '--num-queries',
        type=int,
        help='instance slots per frame n (default 10)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    state_dict = load_detr_state_dict(args.src, args.unsafe_load)
    dims = detr_dims(state_dict)
    num_frames, num_queries = 36, 10
    if args.config:
        num_frames, num_queries = check_config(
            sync_num_frames(Config.fromfile(args.config)), dims)
    num_frames = args.num_frames or num_frames
    num_queries = args.num_queries or num_queries
    converted, skipped = convert_detr(state_dict, num_frames, num_queries)

    meta = dict(
        converted_from='DETR',
        source=osp.basename(args.src),
        num_frames=num_frames,
        num_queries=num_queries,
        embed_dims=dims['embed_dims'],
        skipped=sorted(skipped))
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(dict(state_dict=converted, meta=meta), args.dst)

    print(f'DETR width {dims["embed_dims"]}, '
          f'{dims["num_encoder_layers"]} encoder / '
          f'{dims["num_decoder_layers"]} decoder layers, '
          f'{dims["num_detr_queries"]} queries')
    query_shape = tuple(converted[OUR_QUERY_KEY].shape)
    print(f'converted {len(converted)} tensors: track_head.transformer.* and '
          f'{OUR_QUERY_KEY} {query_shape} (DETR queries 0..'
          f'{num_queries - 1} tiled over {num_frames} frames)')
    for group, keys in sorted(skipped.items()):
        reason = SKIPPED.get(group, 'no TT-SRN counterpart')
        print(f'skipped {len(keys)} {group}* tensors: {reason}')
    print(f'saved {args.dst}')
    if not args.config:
        print(f'note: these weights fit only a TT-SRN of width '
              f'{dims["embed_dims"]} (the default config has 384), e.g. '
              'configs/ttsrn/ttsrn_yvis_detr_init.py; pass --config to '
              'check one')


if __name__ == '__main__':
    main()
