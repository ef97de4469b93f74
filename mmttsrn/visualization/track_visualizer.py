"""Drawing video instances with one colour per track, without seaborn."""
import colorsys
from typing import Tuple

import numpy as np
from mmdet.registry import VISUALIZERS
from mmdet.structures.mask import bitmap_to_polygon
from mmdet.visualization import TrackLocalVisualizer
from mmengine.structures import InstanceData

__all__ = ['instance_color', 'TrackInstanceVisualizer']

# The golden ratio spreads consecutive ids' hues far apart.
_GOLDEN = 0.618033988749895


def instance_color(instance_id: int) -> Tuple[int, int, int]:
    """A bright RGB colour that depends only on ``instance_id``."""
    hue = (int(instance_id) * _GOLDEN) % 1.0
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.95))


@VISUALIZERS.register_module()
class TrackInstanceVisualizer(TrackLocalVisualizer):
    """mmdet's ``TrackLocalVisualizer`` with colours from the instance id.

    mmdet's version picks a track's colour with seaborn, which mmdet does
    not install; here the colour is :func:`instance_color` of the id, so a
    track keeps its colour in every frame and across runs. Ground truth
    (``instances_ids``, from ``PackTrackInputs``) and predictions
    (``instances_id``, from the model) are both drawn: mask, outline, box
    and ``"<category> <id>"`` (plus the score of a prediction).

    Args:
        name (str): Instance name. Defaults to 'visualizer'.
        **kwargs: ``image``, ``vis_backends``, ``save_dir``, ``line_width``
            and ``alpha`` of ``TrackLocalVisualizer``.
    """

    def __init__(self, name: str = 'visualizer', **kwargs) -> None:
        super().__init__(name=name, **kwargs)

    def _draw_instances(self, image: np.ndarray,
                        instances: InstanceData) -> np.ndarray:
        """Draw the instances of one frame.

        Args:
            image (np.ndarray): RGB image (H, W, 3).
            instances (InstanceData): ``labels``, ``bboxes`` (k, 4) x1y1x2y2
                and optionally ``masks`` (k, H, W), ``scores`` and
                ``instances_id`` or ``instances_ids``.

        Returns:
            np.ndarray: The drawn RGB image.
        """
        self.set_image(image)
        if len(instances) == 0:
            return self.get_image()
        instances = instances.cpu().numpy()
        ids = instances.get(
            'instances_id',
            instances.get('instances_ids', np.arange(len(instances))))
        colors = [instance_color(i) for i in ids]
        classes = self.dataset_meta.get('classes')
        names = [
            classes[label] if classes is not None else f'class_{label}'
            for label in instances.labels
        ]
        texts = [f'{name} {i}' for name, i in zip(names, ids)]
        if 'scores' in instances:
            texts = [f'{t}: {s:.2f}' for t, s in zip(texts, instances.scores)]

        if 'masks' in instances:
            masks = instances.masks
            # Ground truth holds BitmapMasks, predictions a bool array.
            masks = masks.to_ndarray() if hasattr(masks, 'to_ndarray') \
                else masks
            masks = np.asarray(masks, dtype=bool)
            self.draw_binary_masks(masks, colors=colors, alphas=self.alpha)
            polygons = [
                contour for mask in masks
                for contour in bitmap_to_polygon(mask)[0]
            ]
            if polygons:
                self.draw_polygons(polygons, edge_colors='w', alpha=0.8)
        if 'bboxes' in instances:
            bboxes = instances.bboxes
            bboxes = np.asarray(getattr(bboxes, 'tensor', bboxes))
            self.draw_bboxes(
                bboxes, edge_colors=colors, line_widths=self.line_width)
            font_size = max(6, min(image.shape[:2]) // 20)
            for text, color, (x1, y1) in zip(texts, colors, bboxes[:, :2]):
                self.draw_texts(
                    text,
                    np.array([x1, y1]) + self.line_width,
                    colors='black',
                    font_sizes=font_size,
                    bboxes=[
                        dict(
                            facecolor=[c / 255 for c in color],
                            alpha=0.8,
                            pad=0.5,
                            edgecolor='none')
                    ])
        return self.get_image()
