import copy

import pytest
import torch
from timm.models.twins import LocallyGroupedAttn

from mmttsrn.models.layers import WindowAttention


@pytest.mark.parametrize('fused', [False, True])
@pytest.mark.parametrize('dim, heads, ws, size', [
    (16, 2, 3, (6, 9)),
    (16, 2, 3, (7, 5)),
    (24, 3, 4, (9, 13)),
    (8, 1, 7, (3, 4)),
])
def test_window_attention_equals_timm(fused, dim, heads, ws, size):
    """Same outputs and gradients as timm's module, whose weights it
    adopts, with and without padded windows."""
    torch.manual_seed(0)
    reference = LocallyGroupedAttn(dim, heads, ws=ws)
    reference.fused_attn = fused
    attn = WindowAttention(copy.deepcopy(reference))
    assert list(attn.state_dict()) == list(reference.state_dict())
    x = torch.randn(2, size[0] * size[1], dim, dtype=torch.float64)
    reference.double()
    attn.double()
    x_ref = x.clone().requires_grad_()
    x_new = x.clone().requires_grad_()
    expected = reference(x_ref, size)
    out = attn(x_new, size)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    expected.backward(grad)
    out.backward(grad)
    torch.testing.assert_close(x_new.grad, x_ref.grad)
    for (name, p), p_ref in zip(attn.named_parameters(),
                                reference.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, msg=name)


def test_window_attention_windows_do_not_mix():
    """A token only sees its own window: changing one window leaves the
    outputs of the others as they were."""
    torch.manual_seed(0)
    attn = WindowAttention(LocallyGroupedAttn(8, 2, ws=2)).eval()
    x = torch.randn(1, 4 * 4, 8)
    y = x.clone().view(1, 4, 4, 8)
    y[:, :2, :2] += 1  # the top-left window
    out, out_changed = attn(x, (4, 4)), attn(y.view(1, 16, 8), (4, 4))
    changed = (out - out_changed).abs().amax(-1).view(4, 4) > 0
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :2] = True
    assert torch.equal(changed, expected)


def test_window_attention_dropout_only_in_training():
    torch.manual_seed(0)
    attn = WindowAttention(LocallyGroupedAttn(8, 2, attn_drop=0.5, ws=2))
    x = torch.randn(1, 16, 8)
    attn.eval()
    assert torch.equal(attn(x, (4, 4)), attn(x, (4, 4)))
    attn.train()
    assert not torch.equal(attn(x, (4, 4)), attn(x, (4, 4)))
