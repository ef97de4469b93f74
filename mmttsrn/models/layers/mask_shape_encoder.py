"""An embedding of the silhouette of each predicted mask."""
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor

__all__ = ['MaskShapeEncoder']


@MODELS.register_module()
class MaskShapeEncoder(BaseModule):
    """Encodes the shape of each mask, whatever its position and size.

    Each soft mask is cropped to the square around its foreground, resized
    to ``size`` x ``size`` and read by a small conv net. The class head can
    then tell categories apart by their silhouette: features pooled under a
    mask say what the pixels look like, not what outline they form, and the
    transformer's stride-32 tokens are coarser than small instances.

    The masks are detached: the class loss teaches the encoder to read the
    masks, not the masks to please the classifier.

    Args:
        out_channels (int): Embedding size.
        size (int): Side of the resized crop. Default 16.
        channels (Sequence[int]): Conv widths; each conv (3x3, ReLU) is
            followed by a 2x2 max-pool. Default (16, 32).
        mask_thr (float): Probability above which a pixel is foreground when
            finding the crop. Default 0.5.
    """

    def __init__(self,
                 out_channels: int,
                 size: int = 16,
                 channels: Sequence[int] = (16, 32),
                 mask_thr: float = 0.5,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if size % 2**len(channels):
            raise ValueError(f'size ({size}) must be divisible by '
                             f'2**len(channels) ({2**len(channels)})')
        self.size = size
        self.mask_thr = mask_thr
        layers = []
        in_channels = 1
        for c in channels:
            layers += [
                nn.Conv2d(in_channels, c, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2)
            ]
            in_channels = c
        side = size // 2**len(channels)
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(in_channels * side * side, out_channels)

    def crop_boxes(self, probs: Tensor) -> Tensor:
        """Square boxes around each mask's foreground.

        Args:
            probs (Tensor): Mask probabilities (N, H, W).

        Returns:
            Tensor: (N, 4) as (cx, cy, half width, half height) in [-1, 1]
            coordinates of the frame: a square in pixels (around the whole
            frame where a mask is empty).
        """
        N, H, W = probs.shape
        fg = probs > self.mask_thr
        rows, cols = fg.any(-1), fg.any(-2)
        ys = torch.arange(H, device=probs.device)
        xs = torch.arange(W, device=probs.device)
        y0 = torch.where(rows, ys, H).amin(-1)
        y1 = torch.where(rows, ys, -1).amax(-1) + 1
        x0 = torch.where(cols, xs, W).amin(-1)
        x1 = torch.where(cols, xs, -1).amax(-1) + 1
        empty = ~rows.any(-1)
        y0, x0 = y0.masked_fill(empty, 0), x0.masked_fill(empty, 0)
        y1, x1 = y1.masked_fill(empty, H), x1.masked_fill(empty, W)
        # Pixel edges to [-1, 1] (align_corners=False convention).
        cx = (x0 + x1).float() / W - 1
        cy = (y0 + y1).float() / H - 1
        side = torch.maximum(x1 - x0, y1 - y0).float()
        return torch.stack([cx, cy, side / W, side / H], -1)

    def forward(self, mask_logits: Tensor) -> Tensor:
        """Embed every slot's mask in every frame.

        Args:
            mask_logits (Tensor): (B, n, T, H, W).

        Returns:
            Tensor: (B, n, T, out_channels).
        """
        probs = mask_logits.detach().float().sigmoid().flatten(0, 2)
        cx, cy, sx, sy = self.crop_boxes(probs).unbind(-1)
        zero = torch.zeros_like(cx)
        theta = torch.stack([
            torch.stack([sx, zero, cx], -1),
            torch.stack([zero, sy, cy], -1)
        ], 1)  # (N, 2, 3)
        grid = F.affine_grid(
            theta, (len(probs), 1, self.size, self.size), align_corners=False)
        crops = F.grid_sample(
            probs[:, None], grid, align_corners=False)  # (N, 1, s, s)
        crops = crops.to(self.fc.weight.dtype)
        embed = self.fc(self.convs(crops).flatten(1))
        return embed.view(*mask_logits.shape[:3], -1)
