import math

import pytest
import torch

from mmttsrn.models.layers import SpatioTemporalSineEncoding


def _reference(t, y, x, num_feats, temperature=10000):
    """Encoding of one position, channel by channel, from the formula.

    ``num_feats``: channels per axis, an int or a (t, y, x) triple.
    """
    if isinstance(num_feats, int):
        num_feats = (num_feats, ) * 3
    values = []
    for p, feats in zip((t, y, x), num_feats):
        for i in range(feats):
            k = i // 2
            w_k = 1 / temperature**(2 * k / feats)
            trig = math.sin if i % 2 == 0 else math.cos
            values.append(trig(w_k * p))
    return torch.tensor(values)


@pytest.mark.parametrize('normalize', [False, True])
def test_matches_per_position_formula(normalize):
    T, H, W, F = 2, 3, 4, 6
    enc = SpatioTemporalSineEncoding(num_feats=F, normalize=normalize)
    pos = enc(torch.zeros(1, T, H, W, dtype=torch.bool))
    assert pos.shape == (1, T, 3 * F, H, W)
    scale = 2 * math.pi
    for t in range(T):
        for y in range(H):
            for x in range(W):
                coords = (t + 1, y + 1, x + 1)
                if normalize:
                    coords = tuple(c / (n + 1e-6) * scale
                                   for c, n in zip(coords, (T, H, W)))
                ref = _reference(*coords, num_feats=F)
                assert torch.allclose(pos[0, t, :, y, x], ref, atol=1e-5)


def test_channel_count_and_order():
    enc = SpatioTemporalSineEncoding(num_feats=8)
    pos = enc(torch.zeros(2, 3, 4, 5, dtype=torch.bool))
    assert pos.shape == (2, 3, 24, 4, 5)
    time, y, x = pos[:, :, :8], pos[:, :, 8:16], pos[:, :, 16:]
    # Each block varies only along its own axis.
    assert torch.allclose(time, time[:, :, :, :1, :1].expand_as(time))
    assert torch.allclose(y, y[:, :1, :, :, :1].expand_as(y))
    assert torch.allclose(x, x[:, :1, :, :1, :].expand_as(x))
    assert not torch.allclose(time[:, 0], time[:, 1])
    assert not torch.allclose(y[..., 0, :], y[..., 1, :])
    assert not torch.allclose(x[..., 0], x[..., 1])


def test_valid_pixels_ignore_padding_without_normalisation():
    enc = SpatioTemporalSineEncoding(num_feats=4, normalize=False)
    small = enc(torch.zeros(1, 2, 3, 4, dtype=torch.bool))
    mask = torch.zeros(1, 2, 5, 7, dtype=torch.bool)
    mask[..., 3:, :] = True
    mask[..., :, 4:] = True
    padded = enc(mask)
    assert torch.allclose(padded[..., :3, :4], small)


def test_normalisation_uses_valid_extent():
    enc = SpatioTemporalSineEncoding(num_feats=4, normalize=True)
    small = enc(torch.zeros(1, 2, 3, 4, dtype=torch.bool))
    mask = torch.zeros(1, 2, 5, 7, dtype=torch.bool)
    mask[..., 3:, :] = True
    mask[..., :, 4:] = True
    padded = enc(mask)
    # Rows/columns are normalised by their own valid count, so the valid
    # region encodes exactly as the unpadded clip does.
    assert torch.allclose(padded[..., :3, :4], small, atol=1e-6)


@pytest.mark.parametrize('num_feats', [(4, 6, 2), [8, 4, 4]])
def test_per_axis_channel_split(num_feats):
    T, H, W = 2, 3, 4
    enc = SpatioTemporalSineEncoding(num_feats=num_feats)
    assert enc.num_feats == tuple(num_feats)
    assert enc.embed_dims == sum(num_feats)
    pos = enc(torch.zeros(1, T, H, W, dtype=torch.bool))
    assert pos.shape == (1, T, sum(num_feats), H, W)
    scale = 2 * math.pi
    for t, y, x in ((0, 0, 0), (1, 2, 3), (1, 0, 2)):
        coords = tuple(
            (c + 1) / (n + 1e-6) * scale for c, n in zip((t, y, x), (T, H, W)))
        ref = _reference(*coords, num_feats=tuple(num_feats))
        assert torch.allclose(pos[0, t, :, y, x], ref, atol=1e-5)


def test_detr_width_split():
    # d = 256 (DETR's width) is not a multiple of 6: split it unevenly.
    enc = SpatioTemporalSineEncoding(num_feats=(86, 86, 84))
    assert enc.embed_dims == 256
    pos = enc(torch.zeros(1, 2, 3, 4, dtype=torch.bool))
    assert pos.shape == (1, 2, 256, 3, 4)
    assert 'num_feats=(86, 86, 84)' in repr(enc)


def test_int_equals_uniform_triple():
    mask = torch.zeros(1, 3, 4, 5, dtype=torch.bool)
    mask[..., 3:, :] = True
    assert torch.equal(
        SpatioTemporalSineEncoding(num_feats=6)(mask),
        SpatioTemporalSineEncoding(num_feats=(6, 6, 6))(mask))


def test_bad_arguments():
    with pytest.raises(ValueError, match='even'):
        SpatioTemporalSineEncoding(num_feats=5)
    with pytest.raises(ValueError, match='three'):
        SpatioTemporalSineEncoding(num_feats=(4, 4))
    with pytest.raises(ValueError, match='even'):
        SpatioTemporalSineEncoding(num_feats=(4, 3, 4))
    with pytest.raises(ValueError, match='shape'):
        SpatioTemporalSineEncoding()(torch.zeros(2, 3, 4, dtype=torch.bool))
