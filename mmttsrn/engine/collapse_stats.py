"""Statistics that show whether a DETR-style head has collapsed.

A head that ignores its input predicts the dataset prior: the encoder memory
is the same for every token, or the decoder output is the same for every
video. These numbers are cheap to compute from tensors a forward pass already
has, so a training run can log them (:class:`CollapseMonitorHook`) and a
checkpoint can be checked after the fact
(``tools/analysis_tools/diagnose_collapse.py``).
"""
from typing import Optional

import torch
from torch import Tensor

__all__ = ['relative_spread', 'token_spread', 'attention_entropy']


def relative_spread(x: Tensor) -> float:
    """Spread of a set of vectors relative to their size.

    Args:
        x (Tensor): (N, ..., d) N samples of the same quantity (e.g. the
            pooled memory of N videos, or the slots' embeddings of N videos).

    Returns:
        float: RMS over the non-sample axes of the std over the N samples,
        divided by the RMS of ``x``. 0 means every sample is the same; about
        1 means the samples differ as much as they are large.
    """
    x = x.detach().float().flatten(1)
    if x.shape[0] < 2:
        return float('nan')
    std = x.std(0, unbiased=False).pow(2).mean().sqrt()
    return float(std / x.pow(2).mean().sqrt().clamp(min=1e-12))


def token_spread(memory: Tensor,
                 padding_mask: Optional[Tensor] = None) -> float:
    """:func:`relative_spread` over the tokens of each clip, averaged.

    Args:
        memory (Tensor): (B, S, d) encoder output.
        padding_mask (Tensor, optional): (B, S) bool, True on padding.

    Returns:
        float: 0 when all the tokens of a clip carry the same vector.
    """
    spreads = []
    for b, tokens in enumerate(memory):
        if padding_mask is not None:
            tokens = tokens[~padding_mask[b]]
        spreads.append(relative_spread(tokens))
    return float(sum(spreads) / len(spreads))


def attention_entropy(query: Tensor,
                      key: Tensor,
                      in_proj_weight: Tensor,
                      in_proj_bias: Tensor,
                      num_heads: int,
                      ignore: Optional[Tensor] = None) -> float:
    """Entropy of multi-head attention weights, normalised to [0, 1].

    Args:
        query (Tensor): (B, L, d) attention input (positions added).
        key (Tensor): (B, S, d).
        in_proj_weight (Tensor): (3d, d) packed q, k, v projection.
        in_proj_bias (Tensor): (3d,).
        num_heads (int): Number of heads.
        ignore (Tensor, optional): Bool, True = key not attended: (B, S) (a
            key padding mask) or (B, L, S) (per query, masked attention).

    Returns:
        float: Mean over batch, heads and queries of the entropy divided by
        log(number of keys the query may attend): 1 means uniform attention
        over those keys (the output is their mean), 0 means each query
        attends to one key.
    """
    w_q, w_k, _ = in_proj_weight.detach().float().chunk(3)
    b_q, b_k, _ = in_proj_bias.detach().float().chunk(3)
    B, L, d = query.shape
    S = key.shape[1]
    q = (query.detach().float() @ w_q.T + b_q).view(B, L, num_heads, -1)
    k = (key.detach().float() @ w_k.T + b_k).view(B, S, num_heads, -1)
    logits = torch.einsum('blhc,bshc->bhls', q, k) * q.shape[-1]**-0.5
    num_keys = torch.full((B, L), S, dtype=torch.float32, device=query.device)
    if ignore is not None:
        ignore = ignore.bool()
        if ignore.dim() == 2:
            ignore = ignore[:, None]
        logits = logits.masked_fill(ignore[:, None], float('-inf'))
        num_keys = (~ignore).sum(-1).float().expand(B, L)
    log_p = logits.log_softmax(-1)
    entropy = -(log_p.exp() * log_p.nan_to_num(neginf=0.0)).sum(-1)
    entropy = entropy / num_keys.clamp(min=2).log()[:, None]
    return float(entropy.mean())
