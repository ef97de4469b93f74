import pytest
import torch
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import nn

from mmttsrn.models.heads import MLPHead, SRNHead
from mmttsrn.models.layers import SirenLayer

D = 16


@pytest.mark.parametrize('cfg, out', [
    (dict(
        type='SRNHead',
        in_channels=D,
        out_channels=6,
        siren_channels=(32, ),
        hidden_channels=8), 6),
    (dict(
        type='SRNHead',
        in_channels=D,
        out_channels=4,
        siren_channels=(32, 16),
        hidden_channels=8), 4),
    (dict(
        type='MLPHead',
        in_channels=D,
        hidden_channels=8,
        out_channels=4,
        num_layers=3), 4),
    (dict(
        type='MLPHead',
        in_channels=D,
        hidden_channels=8,
        out_channels=5,
        num_layers=1), 5),
])
def test_head_shapes_and_gradients(cfg, out):
    head = MODELS.build(cfg)
    head.init_weights()
    x = torch.randn(2, 3, 5, D)
    y = head(x)
    assert y.shape == (2, 3, 5, out)
    y.square().sum().backward()
    for name, param in head.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_srn_head_layout():
    head = SRNHead(
        D, 4, siren_channels=(32, 16), hidden_channels=8, dropout=0.2)
    kinds = [type(m) for m in head.layers]
    assert kinds == [
        SirenLayer, nn.Dropout, SirenLayer, nn.Dropout, nn.Linear, nn.GELU,
        nn.Linear
    ]
    assert head.layers[0].in_features == D
    assert head.layers[2].out_features == 16
    assert head.layers[4].out_features == 8
    assert head.layers[1].p == 0.2


def test_srn_head_keeps_siren_init_after_init_weights():
    # Its own init_cfg touches every layer; the sine layers must recover.
    head = SRNHead(
        D,
        4,
        siren_channels=(32, 16),
        hidden_channels=8,
        init_cfg=dict(
            type='Constant', val=5.0, layer=['Linear', 'SirenLayer']))
    head.init_weights()
    sirens = [m for m in head.modules() if isinstance(m, SirenLayer)]
    assert len(sirens) == 2
    for layer in sirens:
        assert layer.weight.abs().max() <= layer.init_bound
        assert layer.weight.abs().max() > 0.5 * layer.init_bound
    # The init_cfg was applied to the plain linear layers.
    assert torch.all(head.layers[4].weight == 5.0)


def test_srn_head_keeps_siren_init_under_parent_init_cfg():

    class Parent(BaseModule):

        def __init__(self):
            super().__init__(
                init_cfg=dict(type='Constant', val=3.0, layer='SirenLayer'))
            self.head = SRNHead(D, 6)

    parent = Parent()
    parent.init_weights()
    layer = parent.head.layers[0]
    assert layer.weight.abs().max() <= layer.init_bound


def test_srn_head_dropout_only_in_train_mode():
    torch.manual_seed(0)
    head = SRNHead(D, 6, dropout=0.5)
    x = torch.randn(4, D)
    head.train()
    assert not torch.allclose(head(x), head(x))
    head.eval()
    torch.testing.assert_close(head(x), head(x))
    no_drop = SRNHead(D, 6, dropout=0.0).train()
    torch.testing.assert_close(no_drop(x), no_drop(x))


def test_heads_reject_bad_args():
    with pytest.raises(ValueError, match='siren_channels'):
        SRNHead(D, 4, siren_channels=())
    with pytest.raises(ValueError, match='num_layers'):
        MLPHead(D, 8, 4, num_layers=0)
