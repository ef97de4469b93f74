"""Prediction heads applied to the decoder's instance embeddings.

``SRNHead`` is TT-SRN's modified sinusoidal representation network;
``MLPHead`` is the DETR/VisTR feed-forward head kept for the ablation.
"""
from typing import Sequence

from mmdet.models.layers import MLP
from mmdet.registry import MODELS
from mmdet.utils import OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..layers.init_cfg import pretrained_cfg
from ..layers.siren import SirenLayer

__all__ = ['SRNHead', 'MLPHead']


@MODELS.register_module()
class SRNHead(BaseModule):
    """Sinusoidal representation network head.

    Layout: ``Siren(in -> s0) - Dropout - Siren(s0 -> s1) - Dropout - ... -
    Linear(s_last -> hidden) - GELU - Linear(hidden -> out)``. TT-SRN uses
    ``SRNHead(d, K + 1, (128,), 64)`` for classes and
    ``SRNHead(d, 4, (128, 64), 32)`` for boxes (the caller applies the
    sigmoid).

    Args:
        in_channels (int): Input width d.
        out_channels (int): Output width.
        siren_channels (Sequence[int]): Widths of the sine layers.
            Defaults to (128,).
        hidden_channels (int): Width of the linear-GELU-linear end.
            Defaults to 64.
        w0 (float): Frequency factor of the sine layers. Defaults to 1.0.
        dropout (float): Dropout after every sine layer. Defaults to 0.2.
        init_cfg (dict or list[dict], optional): Initialisation config. It
            never replaces the SIREN initialisation of the sine layers
            unless it loads pretrained weights.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 siren_channels: Sequence[int] = (128, ),
                 hidden_channels: int = 64,
                 w0: float = 1.0,
                 dropout: float = 0.2,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(siren_channels) == 0:
            raise ValueError('SRNHead needs at least one entry in '
                             'siren_channels')
        layers = []
        widths = [in_channels, *siren_channels]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            # Inputs are transformer features, not coordinates, so no layer
            # uses the first-layer bound (as in the reference heads).
            layers += [SirenLayer(c_in, c_out, w0=w0), nn.Dropout(dropout)]
        layers += [
            nn.Linear(widths[-1], hidden_channels),
            nn.GELU(),
            nn.Linear(hidden_channels, out_channels)
        ]
        self.layers = nn.Sequential(*layers)

    def init_weights(self) -> None:
        """Apply ``init_cfg``, then restore the SIREN initialisation.

        A generic init (e.g. a parent's Xavier) would break the
        width-dependent sine bounds, so they are re-drawn last.
        """
        super().init_weights()
        if pretrained_cfg(self.init_cfg) is not None:
            return
        for module in self.modules():
            if isinstance(module, SirenLayer):
                module.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the head.

        Args:
            x (Tensor): Embeddings of shape (..., in_channels).

        Returns:
            Tensor: Outputs of shape (..., out_channels).
        """
        return self.layers(x)


@MODELS.register_module()
class MLPHead(MLP):
    """DETR-style feed-forward head (Linear-ReLU-...-Linear).

    Args:
        in_channels (int): Input width.
        hidden_channels (int): Width of the hidden layers.
        out_channels (int): Output width.
        num_layers (int): Number of linear layers. Defaults to 3.
        init_cfg (dict or list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 hidden_channels: int,
                 out_channels: int,
                 num_layers: int = 3,
                 init_cfg: OptMultiConfig = None) -> None:
        if num_layers < 1:
            raise ValueError(
                f'MLPHead needs num_layers >= 1, got {num_layers}')
        super().__init__(in_channels, hidden_channels, out_channels,
                         num_layers)
        self.init_cfg = init_cfg
