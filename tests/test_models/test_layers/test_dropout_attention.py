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


def _reference(query, key, value, keep, p, mask):
    """The composite: softmax weights, the ``mask``'s zeros dropped,
    rescaled."""
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if keep is not None:
        scores = scores.masked_fill(~keep, float('-inf'))
    return (scores.softmax(-1) * mask / (1 - p)) @ value


def _dropout_mask(shape, p, rows):
    """The mask that blocks of ``rows`` queries draw in order, each with
    its own flat positions."""
    mask = torch.ones(shape, dtype=torch.float64)
    for start in range(0, shape[2], rows):
        block = torch.ones_like(mask[:, :, start:start + rows])
        block.view(-1)[dropped_positions(block.numel(), p)] = 0
        mask[:, :, start:start + rows] = block
    return mask


@pytest.mark.parametrize('keep_shape', [None, (2, 1, 1, 7), (2, 1, 5, 7)])
@pytest.mark.parametrize('rows', [2, 5])
def test_dropout_attention_matches_the_composite(keep_shape, rows):
    # Blocks of 2 queries (2, 2, 1) or all 5 at once; keys masked per video
    # or per query.
    gen = torch.Generator().manual_seed(0)
    query, key, value = (
        torch.randn(2, 3, n, 4, generator=gen, dtype=torch.float64)
        for n in (5, 7, 7))
    keep = None
    if keep_shape is not None:
        keep = torch.ones(keep_shape, dtype=torch.bool)
        keep[1, ..., 4:] = False
        if keep_shape[2] > 1:
            keep[0, ..., 1, :3] = False
    p = 0.3
    leaves = [t.clone().requires_grad_() for t in (query, key, value)]
    # float64 weights of a query: 2 videos x 3 heads x 7 keys x 8 bytes.
    torch.manual_seed(5)
    out = dropout_attention(*leaves, keep=keep, p=p, block_bytes=rows * 336)
    # The same seed gives the positions that each block dropped.
    torch.manual_seed(5)
    mask = _dropout_mask((2, 3, 5, 7), p, rows)
    assert 0 < int((mask == 0).sum()) < mask.numel()
    ref_leaves = [t.clone().requires_grad_() for t in (query, key, value)]
    expected = _reference(*ref_leaves, keep, p, mask)
    torch.testing.assert_close(out, expected)
    grad = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    out.backward(grad)
    expected.backward(grad)
    for leaf, ref, name in zip(leaves, ref_leaves, 'qkv'):
        torch.testing.assert_close(leaf.grad, ref.grad, msg=name)
    if keep is not None:
        # Masked keys get no value gradient.
        assert (leaves[2].grad[1, :, 4:] == 0).all()


@pytest.mark.parametrize('needed', ['q', 'k', 'v', 'qv', 'kv'])
def test_dropout_attention_computes_the_needed_gradients_only(needed):
    # Those asked for equal those of a call that needs all three; the
    # others stay None.
    gen = torch.Generator().manual_seed(1)
    inputs = [
        torch.randn(1, 2, n, 4, generator=gen, dtype=torch.float64)
        for n in (5, 6, 6)
    ]
    grad = torch.randn(1, 2, 5, 4, generator=gen, dtype=torch.float64)
    grads = []
    for wanted in ('qkv', needed):
        leaves = [
            t.clone().requires_grad_(name in wanted)
            for t, name in zip(inputs, 'qkv')
        ]
        torch.manual_seed(3)
        dropout_attention(*leaves, p=0.3, block_bytes=200).backward(grad)
        grads.append([leaf.grad for leaf in leaves])
    for name, full, part in zip('qkv', *grads):
        if name in needed:
            torch.testing.assert_close(part, full, msg=name)
        else:
            assert part is None


def test_dropout_attention_keeps_no_weights_for_the_backward_pass():
    # What the forward pass keeps grows with L + S (and the dropped
    # positions), not with a float per weight: 256 x 512 weights a head.
    query, key, value = (torch.randn(1, 2, n, 8, requires_grad=True)
                         for n in (256, 512, 512))
    saved = []

    def pack(tensor):
        saved.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        dropout_attention(query, key, value, p=0.1, block_bytes=2**14)
    weights = 2 * 256 * 512
    assert max(t.numel() for t in saved) < weights // 8
    dropped = [t for t in saved if t.dtype == torch.int32]
    assert len(dropped) == 1
    # Binomial(weights, 0.1): within 5 standard deviations.
    sd = math.sqrt(0.09 * weights)
    assert abs(dropped[0].numel() - 0.1 * weights) < 5 * sd


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


def test_bf16_keeps_each_row_normalised_in_the_backward_pass():
    # bf16 inputs (CPU autocast training) against float32 with the same
    # draws (one block each): the backward pass's weights come from the
    # forward's log-sum-exp, kept in float32; rounded to bf16 it would scale
    # whole rows of them (value gradient 2.4% off here, against 1.0%).
    def run(dtype):
        gen = torch.Generator().manual_seed(0)
        query, key, value = (torch.randn(1, 2, n, 16, generator=gen)
                             for n in (32, 48, 48))
        inputs = (8 * query, key, value)
        leaves = [t.to(dtype).requires_grad_() for t in inputs]
        torch.manual_seed(1)
        out = dropout_attention(*leaves, p=0.1, block_bytes=2**30)
        weights = torch.randn(out.shape, generator=gen)
        (out.float() * weights).sum().backward()
        assert out.dtype == dtype and leaves[0].grad.dtype == dtype
        return out.detach().float(), [t.grad.float() for t in leaves]

    out, grads = run(torch.float32)
    low_out, low_grads = run(torch.bfloat16)

    def error(a, b):
        return float((a - b).norm() / b.norm())

    assert error(low_out, out) < 0.02
    assert error(low_grads[2], grads[2]) < 0.015
    assert max(error(a, b) for a, b in zip(low_grads[:2], grads[:2])) < 0.045
