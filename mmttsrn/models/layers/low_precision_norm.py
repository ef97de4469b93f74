"""Norm layers that keep a bfloat16 or float16 input's dtype in GPU
inference under autocast."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'LowPrecisionLayerNorm', 'LowPrecisionGroupNorm', 'low_precision_norms'
]

_LOW_PRECISION = (torch.bfloat16, torch.float16)


def _keeps_dtype(x: Tensor) -> bool:
    """Whether a norm of ``x`` should return x's dtype rather than the
    float32 that CUDA autocast gives: a low-precision CUDA input, autocast
    on, autograd off (training keeps autocast's float32 norms)."""
    return (x.dtype in _LOW_PRECISION and x.is_cuda
            and not torch.is_grad_enabled()
            and torch.is_autocast_enabled('cuda'))


def _cast(param, dtype):
    return None if param is None else param.to(dtype)


class _KeepsLowPrecision:
    """Mixin for a norm: where :func:`_keeps_dtype`, ``forward`` runs
    ``_norm`` with autocast off and the weight and bias in x's dtype;
    elsewhere the norm's own forward."""

    def forward(self, x: Tensor) -> Tensor:
        if not _keeps_dtype(x):
            return super().forward(x)
        with torch.autocast('cuda', enabled=False):
            return self._norm(x, _cast(self.weight, x.dtype),
                              _cast(self.bias, x.dtype))


class LowPrecisionLayerNorm(_KeepsLowPrecision, nn.LayerNorm):
    """``nn.LayerNorm`` that, in CUDA inference under autocast, normalises a
    bfloat16/float16 input in its own dtype (statistics in float32, as the
    kernel always computes them; weight and bias cast to that dtype)
    instead of casting it to float32 and returning float32, as CPU autocast
    already does. Elsewhere it is ``nn.LayerNorm``.

    Most norms feed convs and linears, which cast a float32 output back to
    the low-precision dtype, so those copies only cost memory traffic
    (docs/benchmark.md). A norm whose output is a residual stream leaves
    that stream in the low-precision dtype, as on the CPU.
    """

    def _norm(self, x: Tensor, weight: Optional[Tensor],
              bias: Optional[Tensor]) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)


class LowPrecisionGroupNorm(_KeepsLowPrecision, nn.GroupNorm):
    """``nn.GroupNorm`` with :class:`LowPrecisionLayerNorm`'s behaviour."""

    def _norm(self, x: Tensor, weight: Optional[Tensor],
              bias: Optional[Tensor]) -> Tensor:
        return F.group_norm(x, self.num_groups, weight, bias, self.eps)


def _low_precision_copy(norm: nn.Module) -> nn.Module:
    param = next(norm.parameters(), None)
    factory = {} if param is None else dict(
        device=param.device, dtype=param.dtype)
    if type(norm) is nn.LayerNorm:
        new = LowPrecisionLayerNorm(
            norm.normalized_shape,
            norm.eps,
            norm.elementwise_affine,
            bias=norm.bias is not None,
            **factory)
    else:
        new = LowPrecisionGroupNorm(norm.num_groups, norm.num_channels,
                                    norm.eps, norm.affine, **factory)
    new.load_state_dict(norm.state_dict())
    return new.train(norm.training)


def low_precision_norms(module: nn.Module) -> int:
    """Replace every ``nn.LayerNorm`` and ``nn.GroupNorm`` under ``module``
    (exactly those types, not subclasses) by its low-precision version, in
    place, with the same parameters and state dict keys (a norm used in
    two places stays one module).

    Returns:
        int: The number of norms replaced.
    """
    copies = {}
    for parent in list(module.modules()):
        # _modules, not named_children(): that skips a second name of the
        # same module.
        for name, child in list(parent._modules.items()):
            if type(child) in (nn.LayerNorm, nn.GroupNorm):
                if id(child) not in copies:
                    copies[id(child)] = _low_precision_copy(child)
                setattr(parent, name, copies[id(child)])
    return len(copies)
