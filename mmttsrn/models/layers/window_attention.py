"""Twins' locally-grouped self-attention over 4-D windows."""
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ['WindowAttention']


class WindowAttention(nn.Module):
    """Locally-grouped self-attention (LSA) of Twins-SVT: each token attends
    to the tokens of its ``ws`` x ``ws`` window.

    Built from timm's ``LocallyGroupedAttn`` and adopting its ``qkv`` and
    ``proj`` layers (same parameter names, same function up to rounding).
    timm hands (N, windows, heads, ws², d) tensors to
    ``F.scaled_dot_product_attention``, which no fused kernel takes (4-D
    only): the math fallback or timm's unfused path then writes every
    window's (ws², ws²) attention weights, and under CUDA autocast casts
    them to float32 for the softmax and back. Here windows are folded into
    the batch, (N·windows, heads, ws², d), views of the ``qkv`` output, so
    that fused kernels run on the CPU and the GPU alike
    (docs/benchmark.md).

    Args:
        attn (nn.Module): timm's ``LocallyGroupedAttn``.
    """

    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.num_heads = attn.num_heads
        self.ws = attn.ws
        self.dropout = attn.attn_drop.p
        self.qkv = attn.qkv
        self.proj = attn.proj
        self.proj_drop = attn.proj_drop

    def forward(self, x: Tensor, size: tuple) -> Tensor:
        """Args: ``x`` (N, h*w, C) tokens of an (h, w) map; ``size`` (h, w).
        Returns (N, h*w, C). A map that windows do not tile is zero-padded
        at its bottom and right, as in timm."""
        n, _, channels = x.shape
        h, w = size
        ws = self.ws
        x = x.view(n, h, w, channels)
        pad_h, pad_w = -h % ws, -w % ws
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        rows, cols = (h + pad_h) // ws, (w + pad_w) // ws
        # (N, rows, ws, cols, ws, C) -> (N·rows·cols, ws², C) windows.
        windows = x.view(n, rows, ws, cols, ws, channels).transpose(2, 3)
        windows = windows.reshape(-1, ws * ws, channels)
        heads = self.num_heads
        q, k, v = self.qkv(windows).view(-1, ws * ws, 3, heads,
                                         channels // heads).permute(
                                             2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0)
        # (N·rows·cols, heads, ws², d) -> (N, h·w, C), padding cropped.
        x = x.transpose(1, 2).reshape(n, rows, cols, ws, ws, channels)
        x = x.transpose(2, 3).reshape(n, rows * ws, cols * ws, channels)
        x = x[:, :h, :w].reshape(n, h * w, channels)
        return self.proj_drop(self.proj(x))
