"""Sine-activated linear layer (SIREN, Sitzmann et al. 2020)."""
import math

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor, nn

__all__ = ['SirenLayer']


@MODELS.register_module()
class SirenLayer(nn.Module):
    """A linear layer followed by a sine, with SIREN initialisation.

    ``y = sin(w0 * (x W^T + b))``. Weight and bias are drawn from
    ``U(-bound, bound)`` with ``bound = 1 / in_features`` for the first layer
    of a network that reads raw coordinates, and
    ``bound = sqrt(c / in_features) / w0`` otherwise, which keeps the
    pre-activations of a deep sine network roughly unit-variance.

    Args:
        in_features (int): Input width.
        out_features (int): Output width.
        w0 (float): Frequency factor of the sine. Defaults to 1.0.
        c (float): Constant of the SIREN bound. Defaults to 6.0.
        is_first (bool): Whether this is the first layer of a SIREN (uses
            the ``1 / in_features`` bound). Defaults to False.
        bias (bool): Whether to learn a bias. Defaults to True.
    """

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 w0: float = 1.0,
                 c: float = 6.0,
                 is_first: bool = False,
                 bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.w0 = w0
        self.c = c
        self.is_first = is_first
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    @property
    def init_bound(self) -> float:
        """float: Half-width of the uniform SIREN initialisation."""
        if self.is_first:
            return 1.0 / self.in_features
        return math.sqrt(self.c / self.in_features) / self.w0

    def reset_parameters(self) -> None:
        """Draw weight and bias from ``U(-init_bound, init_bound)``."""
        bound = self.init_bound
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def init_weights(self) -> None:
        """Re-apply the SIREN initialisation (called by mmengine parents)."""
        self.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer.

        Args:
            x (Tensor): Input of shape (..., in_features).

        Returns:
            Tensor: Output in [-1, 1] of shape (..., out_features).
        """
        return torch.sin(self.w0 * F.linear(x, self.weight, self.bias))

    def extra_repr(self) -> str:
        return (f'in_features={self.in_features}, '
                f'out_features={self.out_features}, w0={self.w0}, '
                f'c={self.c}, is_first={self.is_first}, '
                f'bias={self.bias is not None}')
