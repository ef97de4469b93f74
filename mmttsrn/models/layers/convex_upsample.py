"""Learned convex up-sampling of mask logits, guided by image features."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor

__all__ = ['ConvexUpsample']


@MODELS.register_module()
class ConvexUpsample(BaseModule):
    """Up-samples mask logits by ``scale``: each output pixel is a convex
    combination of the 3x3 coarse logits around it (RAFT's up-sampling of
    flow), with weights predicted from the frame's features.

    Bilinear up-sampling of stride-4 logits rounds corners and cannot place
    an edge between two coarse cells where the image has it (measured: it
    caps the IoU of a 20-pixel cross near 0.9). The weights depend only on
    the frame, so every instance slot shares them.

    Args:
        in_channels (int): Channels of the guiding features.
        scale (int): Up-sampling factor (the features' stride). Default 4.
        feat_channels (int): Hidden width. Default 64.
    """

    def __init__(self,
                 in_channels: int,
                 scale: int = 4,
                 feat_channels: int = 64,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.scale = scale
        self.weight_net = nn.Sequential(
            nn.Conv2d(in_channels, feat_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(feat_channels, 9 * scale * scale, 1))

    def init_weights(self) -> None:
        super().init_weights()
        # Equal weights at the start: a smooth 3x3 average up-sampling.
        nn.init.zeros_(self.weight_net[-1].weight)
        nn.init.zeros_(self.weight_net[-1].bias)

    def forward(self, logits: Tensor, feat: Tensor) -> Tensor:
        """Up-sample every slot's logits.

        Args:
            logits (Tensor): Mask logits (B, n, T, h, w).
            feat (Tensor): Guiding features (B*T, C, h, w).

        Returns:
            Tensor: (B, n, T, h*scale, w*scale).
        """
        B, n, T, h, w = logits.shape
        s = self.scale
        weights = self.weight_net(feat).view(B * T, 9, s, s, h, w)
        weights = weights.float().softmax(1)
        coarse = logits.float().transpose(1, 2).flatten(0, 1)  # (BT, n, h, w)
        # Replicate, not zero, beyond the border: a logit of 0 is a guess.
        neighbours = F.unfold(
            F.pad(coarse, (1, 1, 1, 1), mode='replicate'),
            3).view(B * T, n, 9, h, w)
        fine = torch.einsum('bkpqhw,bnkhw->bnhpwq', weights, neighbours)
        fine = fine.reshape(B, T, n, h * s, w * s)
        return fine.transpose(1, 2)
