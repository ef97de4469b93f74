import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from mmttsrn.utils import encode_masks


def coco_encode(masks: torch.Tensor) -> list:
    array = masks.numpy().astype(np.uint8).transpose(1, 2, 0)
    return mask_util.encode(np.asfortranarray(array))


def test_encode_masks_equals_pycocotools():
    torch.manual_seed(0)
    H, W = 7, 5
    masks = torch.rand(8, H, W) > 0.5
    masks[0] = False  # empty
    masks[1] = True  # full
    masks[2] = False
    masks[2, 0, 0] = True  # first pixel only: a zero-length first run
    masks[3] = False
    masks[3, -1, -1] = True  # last pixel only
    masks[4] = False
    masks[4, :, 2] = True  # one whole column: a single run
    masks[5] = False
    masks[5, 3, :] = True  # one row: a run per column
    rles = encode_masks(masks)
    assert rles == coco_encode(masks)
    assert list(mask_util.area(rles)) == masks.flatten(1).sum(1).tolist()
    assert (mask_util.decode(rles).transpose(2, 0, 1) == masks.numpy()).all()


@pytest.mark.parametrize('shape', [(0, 4, 6), (3, 1, 1), (2, 1, 9), (2, 9, 1)])
def test_encode_masks_edge_shapes(shape):
    masks = torch.rand(shape) > 0.3
    rles = encode_masks(masks)
    assert len(rles) == shape[0]
    if shape[0]:
        assert rles == coco_encode(masks)


def test_encode_masks_takes_integer_masks():
    masks = (torch.rand(3, 6, 4) > 0.5).to(torch.uint8)
    assert encode_masks(masks) == coco_encode(masks.bool())


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_encode_masks_on_cuda():
    masks = torch.rand(4, 30, 20) > 0.5
    assert encode_masks(masks.cuda()) == coco_encode(masks)
