"""Attention with dropout on its weights, for training on the CPU.

On the CPU ``F.scaled_dot_product_attention`` has no fused kernel that
takes ``dropout_p``: it falls back to a composite that writes the
(B, heads, L, S) weights out several times and draws its mask with
``bernoulli_``, one serial random number per weight. For the encoder of a
clip (S = T * h * w tokens) that was most of a training step's attention
time. Here only the dropped positions are drawn (geometric gaps between
them: p * B * heads * L * S draws instead of B * heads * L * S) and one copy
of the weights is kept for the backward pass, dropped in place.

The result has the distribution of the composite's (each weight dropped
independently with probability p, the kept ones scaled by 1 / (1 - p)); the
draws themselves differ. GPUs keep ``F.scaled_dot_product_attention``, whose
fused kernels take dropout.
"""
import math
from typing import Optional

import torch
from torch import Tensor

__all__ = ['dropped_positions', 'dropout_attention']


def dropped_positions(numel: int, p: float) -> Tensor:
    """Indices where ``numel`` independent Bernoulli(p) trials succeed.

    The gaps between successes are geometric, so drawing them gives the
    same process as one draw per trial with about ``p * numel`` draws.

    Args:
        numel (int): Number of trials.
        p (float): Success probability, 0 < p < 1. Drawn from torch's
            global CPU generator, so ``torch.manual_seed`` and activation
            checkpointing's RNG restore apply.

    Returns:
        Tensor: Sorted flat indices in [0, numel), shape (K,), int64.
    """
    if not 0 < p < 1:
        raise ValueError(f'dropped_positions needs 0 < p < 1, got {p}')
    mean = numel * p
    # Six standard deviations above the expected count: one draw of gaps
    # nearly always covers all trials; the loop tops up when it does not.
    count = int(mean + 6 * math.sqrt(mean * (1 - p))) + 16
    positions = _gaps(count, p).cumsum(0) - 1
    while positions[-1] < numel:
        more = _gaps(count, p).cumsum(0) + positions[-1]
        positions = torch.cat([positions, more])
    return positions[:int(torch.searchsorted(positions, numel))]


def _gaps(count: int, p: float) -> Tensor:
    """``count`` Geometric(p) draws on {1, 2, ...}, by inversion of float64
    uniforms: torch's ``geometric_`` takes one scalar log per draw, 3x
    longer."""
    uniform = torch.empty(count, dtype=torch.float64).uniform_()
    # 1 - U is in (0, 1], so the log is finite.
    return torch.log1p(-uniform).div_(math.log1p(-p)).floor_().long() + 1


class _DropoutAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(d) + mask) with weights dropped, times v."""

    @staticmethod
    @torch.amp.custom_fwd(device_type='cpu')
    def forward(ctx, query: Tensor, key: Tensor, value: Tensor,
                keep: Optional[Tensor], p: float) -> Tensor:
        scale = query.shape[-1]**-0.5
        query = query * scale
        weights = torch.matmul(query, key.transpose(-2, -1))
        if keep is not None:
            weights = weights.masked_fill_(~keep, float('-inf'))
        weights = weights.softmax(-1)
        # Drop in place; the few dropped weights are kept aside for the
        # softmax's backward pass instead of a copy of all weights.
        dropped = dropped_positions(weights.numel(), p)
        dropped_weights = weights.view(-1)[dropped]
        kept = weights.view(-1).index_fill_(0, dropped, 0).view_as(weights)
        # Scaling the values instead of the weights saves a pass over the
        # (B, heads, L, S) weights.
        value = value / (1 - p)
        ctx.save_for_backward(query, key, value, kept, dropped,
                              dropped_weights)
        ctx.scale, ctx.p = scale, p
        return torch.matmul(kept, value)

    @staticmethod
    @torch.amp.custom_bwd(device_type='cpu')
    def backward(ctx, grad_out: Tensor):
        query, key, value, kept, dropped, dropped_weights = ctx.saved_tensors
        need_query, need_key, need_value = ctx.needs_input_grad[:3]
        grad_query = grad_key = grad_value = None
        if need_value:
            grad_value = torch.matmul(kept.transpose(-2, -1), grad_out)
            grad_value = grad_value / (1 - ctx.p)
        if need_query or need_key:
            # dP: dropped weights get no gradient. Softmax's backward is
            # dS = P * (dP - sum(dP * P)); P equals the kept weights except
            # where dropped, and there dP = 0, so dS = -P * sum(dP * P).
            grad = torch.matmul(grad_out, value.transpose(-2, -1))
            grad.view(-1).index_fill_(0, dropped, 0)
            grad = grad.mul_(kept)
            row_sums = grad.sum(-1, keepdim=True)
            grad = grad.addcmul_(kept, row_sums, value=-1)
            rows = torch.div(dropped, kept.shape[-1], rounding_mode='floor')
            grad.view(-1)[dropped] = -dropped_weights * row_sums.view(-1)[rows]
            if need_query:
                grad_query = torch.matmul(grad, key) * ctx.scale
            if need_key:
                grad_key = torch.matmul(grad.transpose(-2, -1), query)
        return grad_query, grad_key, grad_value, None, None


def dropout_attention(query: Tensor,
                      key: Tensor,
                      value: Tensor,
                      keep: Optional[Tensor] = None,
                      p: float = 0.1) -> Tensor:
    """Scaled dot-product attention with dropout ``p`` on its weights.

    Args:
        query (Tensor): Shape (B, heads, L, d_head).
        key (Tensor): Shape (B, heads, S, d_head).
        value (Tensor): Shape (B, heads, S, d_head).
        keep (Tensor, optional): Boolean, broadcastable to
            (B, heads, L, S); True = attend (as ``attn_mask`` of
            ``F.scaled_dot_product_attention``). Every query must keep at
            least one key.
        p (float): Dropout probability, 0 < p < 1.

    Returns:
        Tensor: Shape (B, heads, L, d_head).
    """
    return _DropoutAttention.apply(query, key, value, keep, p)
