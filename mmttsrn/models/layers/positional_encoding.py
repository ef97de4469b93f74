"""Spatio-temporal sine positional encoding of TT-SRN (as in VisTR)."""
import math
from typing import Optional, Sequence, Tuple, Union

import torch
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor

__all__ = ['SpatioTemporalSineEncoding']


@MODELS.register_module()
class SpatioTemporalSineEncoding(BaseModule):
    """3-D sine positional encoding over (time, height, width).

    Each axis gets ``num_feats`` channels (d/3 each by default, or a
    ``(t, y, x)`` split such as ``(86, 86, 84)`` when d = 256 is not a
    multiple of 6). For a position ``p`` along an axis with ``F`` channels
    (the cumulative count of valid, i.e. unpadded, entries up to and
    including it, as DETR/VisTR) and frequency index ``k``::

        w_k = 1 / temperature ** (2k / F)
        PE(p, 2k) = sin(w_k * p),  PE(p, 2k + 1) = cos(w_k * p)

    with sin/cos interleaved as DETR's ``PositionEmbeddingSine``. The three
    encodings are concatenated as ``[time | y | x]``, giving
    ``sum(num_feats)`` channels. With ``normalize`` positions are divided by
    the last valid count along their axis (plus ``eps``) and multiplied by
    ``scale``.

    mmdet's ``SinePositionalEncoding3D`` is not reused: it is Mask2Former-VIS's
    variant, which *adds* a time encoding of ``2 * num_feats`` channels onto
    the ``[y | x]`` concatenation instead of concatenating d/3 channels per
    axis as the TT-SRN paper (and VisTR) do.

    Args:
        num_feats (int | Sequence[int]): Channels per axis, or three
            channel counts for the t, y and x axes; each must be even.
            Defaults to 128.
        temperature (float): Frequency base. Defaults to 10000.
        normalize (bool): Whether to normalise positions to
            ``(0, scale]``. Defaults to True.
        scale (float): Scale of normalised positions. Defaults to 2*pi.
        eps (float): Added to the normaliser for stability. Defaults to 1e-6.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 num_feats: Union[int, Sequence[int]] = 128,
                 temperature: float = 10000,
                 normalize: bool = True,
                 scale: float = 2 * math.pi,
                 eps: float = 1e-6,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_feats = self._per_axis(num_feats)
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.eps = eps

    @staticmethod
    def _per_axis(num_feats: Union[int, Sequence[int]]) -> Tuple[int, ...]:
        """``num_feats`` as a (t, y, x) tuple of positive even ints."""
        per_axis = (num_feats, ) * 3 if isinstance(num_feats, int) else \
            tuple(num_feats)
        if len(per_axis) != 3 or not all(
                isinstance(n, int) and n > 0 and n % 2 == 0 for n in per_axis):
            raise ValueError(
                'SpatioTemporalSineEncoding num_feats must be a positive '
                'even number or three of them (t, y, x), got '
                f'{num_feats!r}')
        return per_axis

    @property
    def embed_dims(self) -> int:
        """Channels of the encoding (summed over the three axes)."""
        return sum(self.num_feats)

    def forward(self, mask: Tensor) -> Tensor:
        """Compute the encoding of a padded clip.

        Args:
            mask (Tensor): Padding mask, shape (B, T, h, w), True = padded.

        Returns:
            Tensor: Encoding, shape (B, T, sum(num_feats), h, w), channels
            ordered ``[time | y | x]``.
        """
        if mask.dim() != 4:
            raise ValueError('SpatioTemporalSineEncoding expects a mask of '
                             f'shape (B, T, h, w), got {tuple(mask.shape)}')
        not_mask = ~mask.bool()
        t_embed = not_mask.cumsum(1, dtype=torch.float32)
        y_embed = not_mask.cumsum(2, dtype=torch.float32)
        x_embed = not_mask.cumsum(3, dtype=torch.float32)
        if self.normalize:
            t_embed = t_embed / (t_embed[:, -1:] + self.eps) * self.scale
            y_embed = y_embed / (y_embed[:, :, -1:] + self.eps) * self.scale
            x_embed = x_embed / (x_embed[..., -1:] + self.eps) * self.scale
        parts = []
        # Three axes, each with its own channel count: one vectorised
        # encoding per axis.
        for coord, num_feats in zip((t_embed, y_embed, x_embed),
                                    self.num_feats):
            dim_t = torch.arange(
                num_feats, dtype=torch.float32, device=mask.device)
            dim_t = self.temperature**(2 * (dim_t // 2) / num_feats)
            pos = coord[..., None] / dim_t  # (B, T, h, w, num_feats)
            # Interleave sin (even channels) and cos (odd channels).
            parts.append(
                torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()),
                            dim=-1).flatten(-2))
        pos = torch.cat(parts, dim=-1)  # (B, T, h, w, sum(num_feats))
        return pos.permute(0, 1, 4, 2, 3).contiguous()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_feats={self.num_feats}, '
                f'temperature={self.temperature}, '
                f'normalize={self.normalize}, scale={self.scale}, '
                f'eps={self.eps})')
