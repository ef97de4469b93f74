"""dropout_attention: the CPU attention with dropout of FusedMultiheadAttention
in training, against the composite it replaces (same dropped weights)."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmttsrn.models.layers import (FusedMultiheadAttention, dropout_attention,
                                   dropped_positions)


def test_dropped_positions_are_a_bernoulli_process():
    numel, p = 400_000, 0.1
    torch.manual_seed(0)
    positions = dropped_positions(numel, p)
    assert positions.dtype == torch.int64
    assert int(positions[0]) >= 0 and int(positions[-1]) < numel
    assert (positions.diff() > 0).all()  # sorted, no repeats
    # The count is Binomial(numel, p): within 5 standard deviations.
    sd = math.sqrt(numel * p * (1 - p))
    assert abs(len(positions) - numel * p) < 5 * sd
    # Gaps are Geometric(p): a gap of 1 (two dropped in a row) has
    # probability p.
    adjacent = float((positions.diff() == 1).double().mean())
    assert abs(adjacent - p) < 5 * math.sqrt(p * (1 - p) / len(positions))
    # Spread evenly: each tenth of the range holds about a tenth.
    counts = torch.bincount(positions * 10 // numel, minlength=10)
    assert (counts - numel * p / 10).abs().max() < 5 * math.sqrt(
        numel * p / 10)
    # torch's global seed fixes the draw; another seed changes it.
    torch.manual_seed(0)
    assert torch.equal(dropped_positions(numel, p), positions)
    torch.manual_seed(1)
    assert not torch.equal(dropped_positions(numel, p)[:100], positions[:100])


def test_dropped_positions_tops_up_and_validates():
    # Tiny counts (where six standard deviations are few draws) and large
    # p still cover every trial.
    torch.manual_seed(0)
    for numel, p in [(1, 0.5), (3, 0.9), (50, 0.99), (1000, 0.001)]:
        positions = dropped_positions(numel, p)
        assert len(positions) == 0 or int(positions[-1]) < numel
    assert len(dropped_positions(10_000, 0.99)) > 9_800
    with pytest.raises(ValueError, match='0 < p < 1'):
        dropped_positions(10, 1.0)


def _reference(query, key, value, keep, p, dropped):
    """The composite: softmax weights, the given ones dropped, rescaled."""
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if keep is not None:
        scores = scores.masked_fill(~keep, float('-inf'))
    weights = scores.softmax(-1)
    mask = torch.ones(weights.numel(), dtype=weights.dtype)
    mask[dropped] = 0
    return (weights * mask.view_as(weights) / (1 - p)) @ value


@pytest.mark.parametrize('masked', [False, True])
def test_dropout_attention_matches_the_composite(masked):
    gen = torch.Generator().manual_seed(0)
    shape = (2, 3, 5, 4)
    query, key, value = (
        torch.randn(shape[:2] + (n, 4), generator=gen, dtype=torch.float64)
        for n in (5, 7, 7))
    keep = None
    if masked:
        keep = torch.ones(2, 1, 1, 7, dtype=torch.bool)
        keep[1, ..., 4:] = False
    p = 0.3
    leaves = [t.clone().requires_grad_() for t in (query, key, value)]
    torch.manual_seed(5)
    out = dropout_attention(*leaves, keep=keep, p=p)
    # The same seed gives the positions the function dropped.
    torch.manual_seed(5)
    dropped = dropped_positions(2 * 3 * 5 * 7, p)
    assert 0 < len(dropped) < 2 * 3 * 5 * 7
    ref_leaves = [t.clone().requires_grad_() for t in (query, key, value)]
    expected = _reference(*ref_leaves, keep, p, dropped)
    torch.testing.assert_close(out, expected)
    grad = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    out.backward(grad)
    expected.backward(grad)
    for leaf, ref, name in zip(leaves, ref_leaves, 'qkv'):
        torch.testing.assert_close(leaf.grad, ref.grad, msg=name)
    if masked:
        # Masked keys get no value gradient.
        assert (leaves[2].grad[1, :, 4:] == 0).all()


def test_fused_attention_uses_it_in_cpu_training_only():
    torch.manual_seed(0)
    attn = FusedMultiheadAttention(8, 2, dropout=0.25)
    query = torch.randn(1, 6, 8)
    key = torch.randn(1, 9, 8)
    # Evaluation: no dropout, the same as without it.
    attn.eval()
    plain = FusedMultiheadAttention(8, 2, dropout=0.0).eval()
    plain.load_state_dict(attn.state_dict())
    torch.testing.assert_close(attn(query, key, key), plain(query, key, key))
    # Training: a seeded draw repeats, and differs from no dropout.
    attn.train()
    torch.manual_seed(3)
    first = attn(query, key, key)
    torch.manual_seed(3)
    torch.testing.assert_close(attn(query, key, key), first, rtol=0, atol=0)
    assert not torch.allclose(first, plain(query, key, key))


def test_dropout_keeps_the_expected_output():
    # Averaged over many draws, dropout leaves the output unchanged (the
    # kept weights are scaled by 1 / (1 - p)).
    gen = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(1, 1, 4, 8, generator=gen)
                         for _ in range(3))
    expected = F.scaled_dot_product_attention(query, key, value)
    torch.manual_seed(0)
    mean = torch.stack([
        dropout_attention(query, key, value, p=0.2) for _ in range(4000)
    ]).mean(0)
    torch.testing.assert_close(mean, expected, atol=0.03, rtol=0)
