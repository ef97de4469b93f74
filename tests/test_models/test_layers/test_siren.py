import math

import pytest
import torch
from mmdet.registry import MODELS

from mmttsrn.models.layers import SirenLayer


@pytest.mark.parametrize('is_first, w0, expected', [
    (False, 1.0, math.sqrt(6.0 / 256)),
    (False, 30.0, math.sqrt(6.0 / 256) / 30.0),
    (True, 30.0, 1.0 / 256),
])
def test_siren_init_bounds(is_first, w0, expected):
    torch.manual_seed(0)
    layer = SirenLayer(256, 512, w0=w0, is_first=is_first)
    assert layer.init_bound == pytest.approx(expected)
    for param in (layer.weight, layer.bias):
        peak = param.abs().max().item()
        assert peak <= expected
    # A large uniform draw reaches close to its bound.
    assert layer.weight.abs().max().item() > 0.99 * expected


def test_siren_custom_c_and_no_bias():
    layer = SirenLayer(24, 8, c=2.0, bias=False)
    assert layer.bias is None
    assert layer.init_bound == pytest.approx(math.sqrt(2.0 / 24))
    assert layer.weight.abs().max().item() <= layer.init_bound


def test_siren_forward_shape_and_range():
    torch.manual_seed(0)
    layer = MODELS.build(
        dict(type='SirenLayer', in_features=5, out_features=7, w0=30.0))
    x = torch.randn(2, 3, 4, 5) * 10
    y = layer(x)
    assert y.shape == (2, 3, 4, 7)
    assert y.abs().max().item() <= 1.0
    expected = torch.sin(30.0 * (x @ layer.weight.t() + layer.bias))
    torch.testing.assert_close(y, expected)


def test_siren_init_weights_restores_init():
    layer = SirenLayer(16, 16)
    with torch.no_grad():
        layer.weight.fill_(10.0)
    layer.init_weights()
    assert layer.weight.abs().max().item() <= layer.init_bound
