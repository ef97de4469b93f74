"""Attention with dropout on its weights, for training on the CPU.

On the CPU ``F.scaled_dot_product_attention`` has no fused kernel that
takes ``dropout_p``: it falls back to a composite that writes the
(B, heads, L, S) weights out several times and draws its mask with
``bernoulli_``, one serial random number per weight. For the encoder of a
clip (S = T * h * w tokens) that was most of a training step's attention
time, and its weights grow with the square of the clip length (1.2 GB a
layer at T = 36). Here only the dropped positions are drawn (geometric gaps
between them: p * B * heads * L * S draws instead of B * heads * L * S),
and the weights exist one block of queries at a time, as in flash
attention: the forward pass keeps the output, each query's log-sum-exp and
the dropped positions (int32, a tenth of the weights' count at p = 0.1),
and the backward pass recomputes each block's weights from them.

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


def _rows(t: Tensor, rows: slice) -> Tensor:
    """The query rows ``rows`` of t (..., L or 1, S or d)."""
    return t if t.shape[-2] == 1 else t[..., rows, :]


def _block_weights(query: Tensor, key_t: Tensor, keep: Optional[Tensor],
                   rows: slice) -> Tensor:
    """Scores (B, heads, rows, S) of the scaled ``query`` rows against
    ``key_t`` (B, heads, d_head, S), -inf where ``keep`` is False."""
    weights = torch.matmul(query[:, :, rows], key_t)
    if keep is not None:
        weights.masked_fill_(~_rows(keep, rows), float('-inf'))
    return weights


class _DropoutAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(d) + mask) with weights dropped, times v, one
    block of ``rows`` queries at a time."""

    @staticmethod
    @torch.amp.custom_fwd(device_type='cpu')
    def forward(ctx, query: Tensor, key: Tensor, value: Tensor,
                keep: Optional[Tensor], p: float, rows: int) -> Tensor:
        query = query * query.shape[-1]**-0.5
        # Scaling the values instead of the weights saves a pass over them.
        value = value / (1 - p)
        key_t = key.transpose(-2, -1)
        out = query.new_empty(query.shape)
        # float32 at least, also under bf16 autocast: the backward pass's
        # weights are exp(scores - log_sum_exp), and a rounded log_sum_exp
        # would scale a whole row of them.
        wide = torch.promote_types(query.dtype, torch.float32)
        log_sum_exp = query.new_empty(query.shape[:-1] + (1, ), dtype=wide)
        dropped, counts = [], []
        for start in range(0, query.shape[2], rows):
            block = slice(start, start + rows)
            weights = _block_weights(query, key_t, keep, block)
            top = weights.amax(-1, keepdim=True)
            weights = weights.sub_(top).exp_()
            total = weights.sum(-1, keepdim=True, dtype=wide)
            positions = dropped_positions(weights.numel(), p)
            weights.view(-1).index_fill_(0, positions, 0)
            # Normalised after the product: rows x d_head, not rows x S.
            torch.matmul(weights, value, out=out[:, :, block]).div_(total)
            log_sum_exp[:, :, block] = top.to(wide) + total.log()
            dropped.append(positions.int())
            counts.append(len(positions))
        ctx.save_for_backward(query, key, value, keep, out, log_sum_exp,
                              torch.cat(dropped))
        ctx.p, ctx.rows, ctx.counts = p, rows, counts
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type='cpu')
    def backward(ctx, grad_out: Tensor):
        query, key, value, keep, out, log_sum_exp, dropped = ctx.saved_tensors
        need_query, need_key, need_value = ctx.needs_input_grad[:3]
        need_scores = need_query or need_key
        heads = query.shape[0] * query.shape[1]
        key_t, value_t = key.transpose(-2, -1), value.transpose(-2, -1)
        # Contiguous, whatever the inputs' strides: the matmuls accumulate
        # into (B * heads) views of them.
        grad_query = query.new_empty(query.shape) if need_query else None
        grad_key = key.new_zeros(key.shape) if need_key else None
        grad_value = value.new_zeros(value.shape) if need_value else None
        if need_scores:
            # Softmax's backward is dS = P * (dP - sum(dP * P)), and the
            # sum is each query's grad_out . out (dropout included), summed
            # as wide as the log-sum-exp.
            row_sums = (grad_out * out).sum(
                -1, keepdim=True, dtype=log_sum_exp.dtype)
        starts = range(0, query.shape[2], ctx.rows)
        for start, positions in zip(starts, dropped.split(ctx.counts)):
            block = slice(start, start + ctx.rows)
            positions = positions.long()
            weights = _block_weights(query, key_t, keep, block)
            weights = weights.sub_(log_sum_exp[:, :, block]).exp_()
            grad_block = grad_out[:, :, block]
            if need_scores:
                # dP, zero where dropped; dS needs P there too
                # (dS = -P * sum).
                grad = torch.matmul(grad_block, value_t)
                grad.view(-1).index_fill_(0, positions, 0)
                grad = grad.sub_(row_sums[:, :, block]).mul_(weights)
            # Accumulated by the matmuls, (B * heads) at a time.
            if need_value:
                weights.view(-1).index_fill_(0, positions, 0)
                grad_value.view(heads, *value.shape[2:]).baddbmm_(
                    weights.flatten(0, 1).transpose(1, 2),
                    grad_block.flatten(0, 1))
            if need_query:
                torch.matmul(grad, key, out=grad_query[:, :, block])
            if need_key:
                grad_key.view(heads, *key.shape[2:]).baddbmm_(
                    grad.flatten(0, 1).transpose(1, 2),
                    query[:, :, block].flatten(0, 1))
        # The saved query is scaled already: dK = dS^T (q * scale).
        if need_query:
            grad_query.mul_(query.shape[-1]**-0.5)
        if need_value:
            grad_value.div_(1 - ctx.p)
        return grad_query, grad_key, grad_value, None, None, None


def dropout_attention(query: Tensor,
                      key: Tensor,
                      value: Tensor,
                      keep: Optional[Tensor] = None,
                      p: float = 0.1,
                      block_bytes: int = 8 * 2**20) -> Tensor:
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
        block_bytes (int): The weights are computed for as many queries at
            a time as fit in this many bytes (one query at least); each
            block draws its own dropped positions, in order. Defaults to
            8 MiB, which stays in malloc's reused memory and was the
            fastest of 4, 8, 16 and 32 MiB for the encoder of a 36-frame
            clip.

    Returns:
        Tensor: Shape (B, heads, L, d_head).
    """
    B, heads, _, _ = query.shape
    per_query = B * heads * key.shape[2] * query.element_size()
    rows = max(1, block_bytes // per_query)
    return _DropoutAttention.apply(query, key, value, keep, p, rows)
