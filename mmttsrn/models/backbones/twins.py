"""Twins-SVT backbone built from timm's ``Twins`` implementation."""
from collections.abc import Mapping
from typing import Dict, Optional, Sequence, Tuple

import torch.nn as nn
import torch.utils.checkpoint as cp
from mmdet.registry import MODELS
from mmengine.logging import print_log
from mmengine.model import BaseModule
from timm.models.twins import LocallyGroupedAttn, Twins
from torch import Tensor

from mmttsrn.engine.checkpoint import load_pretrained_file
from ..layers.init_cfg import pretrained_cfg
from ..layers.window_attention import WindowAttention

__all__ = ['TwinsSVT', 'convert_twins_state_dict']

# Keys that wrap the weights in training checkpoints, tried in this order.
_WRAPPER_KEYS = ('state_dict', 'model')
# Prefixes left by DataParallel/DDP and by detectors that own the backbone.
_PREFIXES = ('module.', 'backbone.')
# Classification-only parts of an ImageNet checkpoint that the backbone
# does not have: the classifier and the norm after the last stage.
_DROPPED_PREFIXES = ('head.', 'norm.')


def convert_twins_state_dict(state_dict: Mapping) -> Dict[str, Tensor]:
    """Convert a Twins checkpoint to :class:`TwinsSVT` parameter names.

    The official Meituan-AutoML Twins code and timm's ``Twins`` use the same
    parameter names (timm loads the official weights without a filter), e.g.
    ``patch_embeds.0.proj.weight``, ``blocks.2.3.attn.q.weight``,
    ``pos_block.0.proj.0.weight``. They differ only in how the weights are
    wrapped, which is undone here:

    - ``{'state_dict': sd}`` / ``{'model': sd}`` wrappers are unpacked;
    - ``module.`` and ``backbone.`` prefixes are stripped;
    - the classifier (``head.*``) and the final ``norm.*`` are dropped.

    Args:
        state_dict (Mapping): A plain state dict or a checkpoint dict
            wrapping one.

    Returns:
        dict[str, Tensor]: State dict keyed like :class:`TwinsSVT`.
    """
    while True:
        wrapper = next(
            (k
             for k in _WRAPPER_KEYS if isinstance(state_dict.get(k), Mapping)),
            None)
        if wrapper is None:
            break
        state_dict = state_dict[wrapper]

    converted = {}
    for key, value in state_dict.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix):]
                    stripped = True
        if key.startswith(_DROPPED_PREFIXES):
            continue
        converted[key] = value
    return converted


def _summarise(keys: Sequence[str], limit: int = 8) -> str:
    """The first ``limit`` keys, and how many more there are."""
    shown = ', '.join(keys[:limit]) or 'none'
    return shown + (f' and {len(keys) - limit} more'
                    if len(keys) > limit else '')


@MODELS.register_module()
class TwinsSVT(BaseModule):
    """Twins-SVT backbone (`Twins: Revisiting the Design of Spatial Attention
    in Vision Transformers <https://arxiv.org/abs/2104.13840>`_).

    The stages are timm's ``Twins`` modules (patch embedding, alternating
    locally-grouped / global sub-sampled attention blocks, PEG position
    convolution), so parameter names match timm's and the official
    checkpoints. The classification norm and head are not built, nor are
    stages after the last one in ``out_indices``.

    Args:
        embed_dims (Sequence[int]): Channels of each stage.
            Defaults to (64, 128, 256, 512).
        depths (Sequence[int]): Blocks per stage, as timm counts them:
            single blocks alternating locally-grouped and global attention.
            The paper's depths (1, 1, 5, 4) count SSSA modules of one block
            of each kind, i.e. timm depths (2, 2, 10, 8); ImageNet
            Twins-SVT-S is (2, 2, 10, 4). Defaults to (2, 2, 10, 8).
        num_heads (Sequence[int]): Attention heads per stage.
            Defaults to (2, 4, 8, 16).
        mlp_ratios (Sequence[float]): MLP hidden ratio per stage.
            Defaults to (4, 4, 4, 4).
        sr_ratios (Sequence[int]): Spatial reduction of the global
            sub-sampled attention per stage. Defaults to (8, 4, 2, 1).
        window_sizes (Sequence[int]): Window of the locally-grouped
            attention per stage. Defaults to (7, 7, 7, 7).
        patch_size (int): Stride of the first patch embedding; later
            stages halve the resolution. Defaults to 4.
        drop_path_rate (float): Stochastic depth rate, increased linearly
            over all blocks. Defaults to 0.0.
        out_indices (Sequence[int]): Stages whose outputs are returned.
            Defaults to (0, 1, 2, 3).
        frozen_stages (int): Stages ``0..frozen_stages`` are frozen (no
            gradient, eval mode). -1 freezes nothing. Defaults to -1.
        with_cp (bool): Activation checkpointing: in training, keep only
            each attention block's input and recompute the block in the
            backward pass (less memory for the T frames of a clip, one more
            forward of the blocks; same result and gradients).
            Defaults to False.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint='/local/file.pth')`` loads local Twins weights (timm or
            official layout, see :func:`convert_twins_state_dict`); add
            ``allow_unsafe_load=True`` only for a trusted file that holds
            more than tensors. Defaults to None (timm's initialisation).
    """

    def __init__(self,
                 embed_dims: Sequence[int] = (64, 128, 256, 512),
                 depths: Sequence[int] = (2, 2, 10, 8),
                 num_heads: Sequence[int] = (2, 4, 8, 16),
                 mlp_ratios: Sequence[float] = (4, 4, 4, 4),
                 sr_ratios: Sequence[int] = (8, 4, 2, 1),
                 window_sizes: Sequence[int] = (7, 7, 7, 7),
                 patch_size: int = 4,
                 drop_path_rate: float = 0.0,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        per_stage = dict(
            embed_dims=embed_dims,
            depths=depths,
            num_heads=num_heads,
            mlp_ratios=mlp_ratios,
            sr_ratios=sr_ratios,
            window_sizes=window_sizes)
        lengths = {name: len(value) for name, value in per_stage.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError('TwinsSVT per-stage arguments must have the same '
                             f'length, got {lengths}')
        total_stages = len(depths)
        out_indices = tuple(out_indices)
        if not out_indices or any(i < 0 or i >= total_stages
                                  for i in out_indices):
            raise ValueError(f'TwinsSVT out_indices {out_indices} must be '
                             f'non-empty and within [0, {total_stages})')
        if not -1 <= frozen_stages < total_stages:
            raise ValueError(f'TwinsSVT frozen_stages={frozen_stages} must be '
                             f'in [-1, {total_stages})')
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        self.num_stages = max(out_indices) + 1
        self.embed_dims = tuple(embed_dims[:self.num_stages])
        # Only a nominal size for timm's divisibility asserts; the modules
        # themselves accept any input size.
        nominal_size = patch_size * 2**(total_stages - 1)
        # All stages are built so the drop-path schedule matches the full
        # model's; stages after the last output are then dropped.
        twins = Twins(
            img_size=nominal_size,
            patch_size=patch_size,
            num_classes=0,
            global_pool='',
            embed_dims=tuple(embed_dims),
            num_heads=tuple(num_heads),
            mlp_ratios=tuple(mlp_ratios),
            depths=tuple(depths),
            sr_ratios=tuple(sr_ratios),
            wss=tuple(window_sizes),
            drop_path_rate=drop_path_rate)
        # Adopt timm's stage modules directly so parameter names are
        # exactly timm's (``patch_embeds.0.proj.weight`` ...).
        self.patch_embeds = twins.patch_embeds[:self.num_stages]
        self.pos_drops = twins.pos_drops[:self.num_stages]
        self.blocks = twins.blocks[:self.num_stages]
        self.pos_block = twins.pos_block[:self.num_stages]
        # timm's locally-grouped attention gives SDPA 5-D windows, which no
        # fused kernel takes; WindowAttention folds them into the batch.
        for block in self.blocks.modules():
            if isinstance(getattr(block, 'attn', None), LocallyGroupedAttn):
                block.attn = WindowAttention(block.attn)
        self._freeze_stages()

    def _stage_modules(self, i: int) -> Tuple[nn.Module, ...]:
        return (self.patch_embeds[i], self.pos_drops[i], self.blocks[i],
                self.pos_block[i])

    def _freeze_stages(self) -> None:
        for i in range(min(self.frozen_stages + 1, self.num_stages)):
            for module in self._stage_modules(i):
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True) -> 'TwinsSVT':
        """Set train mode while keeping frozen stages in eval mode."""
        super().train(mode)
        self._freeze_stages()
        return self

    def init_weights(self) -> None:
        """Load local pretrained weights if ``init_cfg`` asks for them.

        Without a ``Pretrained`` ``init_cfg`` timm's initialisation (done at
        construction) is kept.
        """
        pretrained = pretrained_cfg(self.init_cfg)
        if pretrained is None:
            super().init_weights()
            return
        checkpoint = pretrained.get('checkpoint')
        if checkpoint is None:
            raise ValueError('TwinsSVT init_cfg of type Pretrained needs a '
                             f'"checkpoint" path, got {self.init_cfg}')
        self.load_pretrained(checkpoint,
                             pretrained.get('allow_unsafe_load', False))
        self._is_init = True

    def load_pretrained(self,
                        checkpoint: str,
                        allow_unsafe: bool = False) -> None:
        """Load Twins weights from a local file.

        Args:
            checkpoint (str): Path of a ``.pth`` file holding a state dict in
                timm or official Twins layout, possibly wrapped.
            allow_unsafe (bool): Also unpickle Python objects in the file
                (runs code from it: only for files you trust).
        """
        raw = load_pretrained_file(checkpoint, 'TwinsSVT pretrained',
                                   allow_unsafe)
        state_dict = convert_twins_state_dict(raw)
        try:
            missing, unexpected = self.load_state_dict(
                state_dict, strict=False)
        except RuntimeError as err:
            raise RuntimeError(
                f'TwinsSVT cannot load {checkpoint}: {err}') from err
        # Stages after the last output are not built, so their weights are
        # expected to be left over; any other mismatch means the file is for
        # another depth or width (e.g. paper depths vs. ImageNet Twins-SVT-S)
        # and loading it half would train a silently different backbone.
        unexpected = [
            k for k in unexpected
            if not self._is_unbuilt_stage_key(k)
        ]
        if missing or unexpected:
            raise RuntimeError(
                f'TwinsSVT cannot load {checkpoint}: it does not fit the '
                f'configured stages (depths, embed_dims). Missing keys: '
                f'{_summarise(missing)}; unexpected keys: '
                f'{_summarise(unexpected)}')
        print_log(
            f'TwinsSVT loaded pretrained weights from {checkpoint}',
            logger='current')

    def _is_unbuilt_stage_key(self, key: str) -> bool:
        """Whether ``key`` belongs to a stage after the last output."""
        parts = key.split('.')
        return (parts[0] in ('patch_embeds', 'pos_drops', 'blocks',
                             'pos_block') and len(parts) > 1
                and parts[1].isdigit() and int(parts[1]) >= self.num_stages)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Extract multi-scale features.

        Args:
            x (Tensor): Images, shape (N, 3, H, W). H and W need not be
                multiples of the window size (windows are zero-padded).

        Returns:
            tuple[Tensor]: For each stage in ``out_indices`` a feature map
            (N, C_i, H_i, W_i) at stride ``patch_size * 2**i``.
        """
        batch_size = x.shape[0]
        outs = []
        for i in range(self.num_stages):
            x, size = self.patch_embeds[i](x)
            x = self.pos_drops[i](x)
            for j, block in enumerate(self.blocks[i]):
                if self.with_cp and x.requires_grad:
                    # Non-reentrant: also restores the RNG state, so drop
                    # path draws the same samples when recomputed.
                    x = cp.checkpoint(block, x, size, use_reentrant=False)
                else:
                    x = block(x, size)
                if j == 0:
                    # Twins' PEG: position convolution after the first block.
                    x = self.pos_block[i](x, size)
            # (N, h*w, C) tokens -> (N, C, h, w) map, the next stage's input.
            x = x.transpose(1, 2).reshape(batch_size, -1, *size).contiguous()
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
