"""Per-frame random affine/crop that turns a repeated image into a clip."""
import math
from typing import Optional, Sequence

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import BaseBoxes
from mmdet.structures.mask import BitmapMasks

__all__ = ['RandomFrameAffine']


@TRANSFORMS.register_module()
class RandomFrameAffine(BaseTransform):
    """Randomly scale, rotate and shift one frame, keeping its size.

    Meant for pseudo-videos (:class:`ImagePseudoVideoDataset`): every frame
    of the clip is the same still image, and this transform, placed inside
    ``TransformBroadcaster`` after the annotations are loaded, gives each
    frame its own random affine, so that instances move, grow or shrink and
    leave the view from frame to frame. Its randomness is deliberately not
    marked ``cache_randomness``, so ``share_random_params=True`` (which the
    other transforms of the clip still obey) does not freeze it.

    The warped image is seen through a window of the original size, i.e. the
    affine both moves and crops. Masks are warped with nearest-neighbour
    sampling, boxes are the tight boxes of the warped masks, and an instance
    with fewer than ``min_area`` mask pixels left in the window is removed
    from this frame (its ``instance_id`` still marks it in the others).

    Required Keys:

    - img
    - gt_masks (BitmapMasks | PolygonMasks, N instances)
    - gt_bboxes (np.ndarray (N, 4) or BaseBoxes, optional),
      gt_bboxes_labels, gt_ignore_flags, gt_instances_ids (optional)

    Modified Keys:

    - img
    - gt_masks (BitmapMasks)
    - gt_bboxes (same type as given), gt_bboxes_labels, gt_ignore_flags,
      gt_instances_ids

    Args:
        scale_range (Sequence[float]): Range of the zoom factor.
            Defaults to (0.8, 1.25).
        max_rotate_degree (float): Largest rotation, either way.
            Defaults to 10.
        max_translate_ratio (float): Largest shift as a fraction of the frame
            width (x) and height (y), either way. Defaults to 0.15.
        min_area (int): Fewest mask pixels an instance needs to stay in the
            frame. Defaults to 1.
        border_val (Sequence[int]): Fill value of the image outside the
            warped input. Defaults to (114, 114, 114).
    """

    def __init__(self,
                 scale_range: Sequence[float] = (0.8, 1.25),
                 max_rotate_degree: float = 10.0,
                 max_translate_ratio: float = 0.15,
                 min_area: int = 1,
                 border_val: Sequence[int] = (114, 114, 114)) -> None:
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError('scale_range must be (min, max) with '
                             f'0 < min <= max, got {scale_range}')
        if max_rotate_degree < 0:
            raise ValueError('max_rotate_degree must be >= 0, got '
                             f'{max_rotate_degree}')
        if not 0 <= max_translate_ratio <= 1:
            raise ValueError('max_translate_ratio must be in [0, 1], got '
                             f'{max_translate_ratio}')
        if min_area < 1:
            raise ValueError(f'min_area must be >= 1, got {min_area}')
        self.scale_range = tuple(scale_range)
        self.max_rotate_degree = max_rotate_degree
        self.max_translate_ratio = max_translate_ratio
        self.min_area = min_area
        self.border_val = tuple(border_val)

    def _random_matrix(self, height: int, width: int) -> np.ndarray:
        """A random 2x3 affine about the frame centre.

        Args:
            height (int): Frame height H.
            width (int): Frame width W.

        Returns:
            np.ndarray: float64 matrix of shape (2, 3), input to output
            pixel coordinates.
        """
        # Zoom is drawn log-uniformly, so zooming in and out are as likely.
        scale = math.exp(np.random.uniform(*np.log(self.scale_range)))
        angle = np.random.uniform(-self.max_rotate_degree,
                                  self.max_rotate_degree)
        shift = np.random.uniform(
            -self.max_translate_ratio, self.max_translate_ratio,
            size=2) * (width, height)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle,
                                         scale)
        matrix[:, 2] += shift
        return matrix

    def transform(self, results: dict) -> Optional[dict]:
        """Warp the frame and its instances.

        Args:
            results (dict): One frame's results.

        Returns:
            dict: The results with the warped image and the instances still
            in view.
        """
        img = results['img']
        height, width = img.shape[:2]
        matrix = self._random_matrix(height, width)
        results['img'] = cv2.warpAffine(
            img,
            matrix, (width, height),
            flags=cv2.INTER_LINEAR,
            borderValue=self.border_val)
        if results.get('gt_masks') is None:
            if results.get('gt_bboxes') is not None:
                raise ValueError(
                    f'{type(self).__name__} moves boxes through their masks: '
                    'load them with LoadTrackAnnotations(with_mask=True)')
            return results
        masks = results['gt_masks'].to_ndarray()
        warped = np.stack([
            cv2.warpAffine(
                mask, matrix, (width, height), flags=cv2.INTER_NEAREST)
            for mask in masks
        ]) if len(masks) else masks.reshape(0, height, width)
        keep = warped.reshape(len(warped), -1).sum(1) >= self.min_area
        warped = warped[keep]
        results['gt_masks'] = BitmapMasks(warped, height, width)
        boxes = self._tight_boxes(warped)
        # Keep the box type of the loader (LoadTrackAnnotations: arrays).
        old = results.get('gt_bboxes')
        results['gt_bboxes'] = type(old)(boxes) if isinstance(
            old, BaseBoxes) else boxes
        for key in ('gt_bboxes_labels', 'gt_ignore_flags',
                    'gt_instances_ids'):
            if key in results:
                results[key] = results[key][keep]
        return results

    @staticmethod
    def _tight_boxes(masks: np.ndarray) -> np.ndarray:
        """[x1, y1, x2, y2] boxes of non-empty masks.

        Args:
            masks (np.ndarray): uint8 masks of shape (N, H, W).

        Returns:
            np.ndarray: float32 boxes of shape (N, 4), in pixels (x2, y2
            exclusive, like the boxes of the annotation files).
        """
        boxes = np.zeros((len(masks), 4), dtype=np.float32)
        for i, mask in enumerate(masks):
            ys, xs = np.nonzero(mask)
            boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        return boxes

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale_range={self.scale_range}, '
                f'max_rotate_degree={self.max_rotate_degree}, '
                f'max_translate_ratio={self.max_translate_ratio}, '
                f'min_area={self.min_area}, border_val={self.border_val})')
