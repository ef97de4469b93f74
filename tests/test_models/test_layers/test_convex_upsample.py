"""ConvexUpsample: up-sampled logits are convex combinations of the 3x3
coarse logits around each fine pixel."""
import torch
import torch.nn.functional as F

from mmttsrn.models.layers import ConvexUpsample


def test_starts_as_a_3x3_average_and_keeps_constants():
    torch.manual_seed(0)
    up = ConvexUpsample(in_channels=8, scale=4)
    up.init_weights()
    logits = torch.randn(2, 3, 2, 6, 8)  # (B, n, T, h, w)
    feat = torch.randn(4, 8, 6, 8)  # (B*T, C, h, w)
    fine = up(logits, feat)
    assert fine.shape == (2, 3, 2, 24, 32)
    padded = F.pad(logits.flatten(0, 2), (1, 1, 1, 1), mode='replicate')
    # Fine pixel (9, 13) lies in coarse cell (2, 3).
    expected = padded[:, 2:5, 3:6].mean((-2, -1)).view(2, 3, 2)
    assert torch.allclose(fine[..., 9, 13], expected, atol=1e-6)
    const = torch.full_like(logits, 2.5)
    assert torch.allclose(up(const, feat), torch.full_like(fine, 2.5))


def test_weights_are_learnt_and_stay_within_the_neighbourhood():
    torch.manual_seed(0)
    up = ConvexUpsample(in_channels=8, scale=2)
    up.init_weights()
    logits = torch.randn(1, 2, 1, 4, 4, requires_grad=True)
    feat = torch.randn(1, 8, 4, 4)
    torch.nn.init.normal_(up.weight_net[-1].weight)
    fine = up(logits, feat)
    fine.sum().backward()
    assert up.weight_net[-1].weight.grad.abs().sum() > 0
    # A convex combination never leaves the range of its neighbours.
    padded = F.pad(logits.detach()[0, :, 0], (1, 1, 1, 1), mode='replicate')
    lo = -F.max_pool2d(-padded, 3, stride=1)
    hi = F.max_pool2d(padded, 3, stride=1)
    lo = lo.repeat_interleave(2, -1).repeat_interleave(2, -2)
    hi = hi.repeat_interleave(2, -1).repeat_interleave(2, -2)
    assert (fine[0, :, 0] >= lo - 1e-5).all()
    assert (fine[0, :, 0] <= hi + 1e-5).all()
