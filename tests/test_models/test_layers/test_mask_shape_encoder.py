"""MaskShapeEncoder: sees a mask's outline, not its place or size."""
import pytest
import torch

from mmttsrn.models.layers import MaskShapeEncoder


def _square_mask(top, left, side, size=(24, 32)):
    logits = torch.full(size, -10.)
    logits[top:top + side, left:left + side] = 10.
    return logits


def test_embedding_ignores_position_and_scale_but_not_shape():
    torch.manual_seed(0)
    encoder = MaskShapeEncoder(out_channels=8, size=16)
    small = _square_mask(2, 3, 4)
    big = _square_mask(10, 12, 12)
    bar = torch.full((24, 32), -10.)
    bar[10:14, 4:28] = 10.
    masks = torch.stack([small, big, bar])[None, :, None]  # (1, 3, 1, H, W)
    embed = encoder(masks)
    assert embed.shape == (1, 3, 1, 8)
    # Crops of a 4-pixel square are blurrier than of a 12-pixel one.
    same_shape = (embed[0, 0] - embed[0, 1]).norm()
    other_shape = (embed[0, 0] - embed[0, 2]).norm()
    assert same_shape < 0.25 * other_shape


def test_crop_is_a_pixel_square_around_the_foreground():
    encoder = MaskShapeEncoder(out_channels=4)
    probs = torch.stack([
        _square_mask(4, 8, 6).sigmoid(),
        torch.zeros(24, 32),  # empty: a square around the whole frame
    ])
    boxes = encoder.crop_boxes(probs)
    # Square of side 6 px: half sizes 6/32 and 6/24 in [-1, 1] units.
    cx, cy = (8 + 14) / 32 - 1, (4 + 10) / 24 - 1
    assert torch.allclose(boxes[0], torch.tensor([cx, cy, 6 / 32, 6 / 24]))
    assert torch.allclose(boxes[1], torch.tensor([0., 0., 1., 32 / 24]))


def test_masks_are_detached_and_size_is_checked():
    encoder = MaskShapeEncoder(out_channels=4)
    masks = _square_mask(2, 2, 8)[None, None, None].requires_grad_()
    encoder(masks).sum().backward()
    assert masks.grad is None
    assert encoder.fc.weight.grad is not None
    with pytest.raises(ValueError, match='divisible'):
        MaskShapeEncoder(out_channels=4, size=10, channels=(8, 8))
