"""Still images of a COCO-format file as pseudo-videos for joint training."""
import copy
import os.path as osp
from typing import Dict, List, Optional

from mmdet.datasets import BaseVideoDataset
from mmdet.registry import DATASETS
from mmengine.logging import print_log

from .youtube_vis import _require, category_names, load_json_object

__all__ = ['ImagePseudoVideoDataset']

_FILTER_KEYS = ('filter_empty_gt', )


@DATASETS.register_module()
class ImagePseudoVideoDataset(BaseVideoDataset):
    """Images of a COCO instance-segmentation file as ``num_frames`` clips.

    Reads a COCO-format file::

        {"images": [{"id", "file_name", "height", "width"}],
         "annotations": [{"id", "image_id", "category_id", "bbox",
                          "segmentation", "iscrowd"}],
         "categories": [{"id", "name"}]}

    and gives each image as a video of ``num_frames`` copies of it, in the
    structure :class:`YouTubeVISOfficialDataset` gives (so the same train
    pipeline, ``ClipFrameSample`` + ``TransformBroadcaster`` +
    ``PackTrackInputs``, consumes it)::

        dict(video_id, video_length=num_frames,
             images=[dict(img_id, img_path, height, width, frame_id,
                          video_id,
                          instances=[dict(bbox=[x1, y1, x2, y2],
                                          bbox_label, mask, instance_id,
                                          ignore_flag)])] * num_frames)

    ``instance_id`` is the annotation id, the same in every frame, and
    ``video_id``/``img_id`` are the image id. The frames only differ once the
    pipeline moves them: put :class:`RandomFrameAffine` in the
    ``TransformBroadcaster`` after ``LoadTrackAnnotations``, so that
    instances move, scale and leave the view differently per frame.

    Classes: with ``category_map=None`` they are the file's categories
    (sorted by id), or the subset ``metainfo['classes']`` names. With a
    ``category_map`` ``{image category id: class name}``, the classes must
    be given in ``metainfo['classes']`` (usually the video dataset's, so
    that both share labels), each mapped category's annotations get the
    label of its class, and annotations of unmapped categories are dropped.

    Args:
        num_frames (int): Frames T of each pseudo-video (match the train
            pipeline's ``ClipFrameSample``).
        category_map (dict[int, str], optional): Image category id to class
            name of ``metainfo['classes']``. Defaults to None.
        *args: Passed to :class:`mmdet.datasets.BaseVideoDataset`.
        **kwargs: Passed to :class:`mmdet.datasets.BaseVideoDataset`
            (``ann_file``, ``data_root``, ``data_prefix=dict(img_path=...)``,
            ``metainfo``, ``filter_cfg=dict(filter_empty_gt=True)``,
            ``pipeline``, ``backend_args``, ...).
    """

    METAINFO = dict(classes=None)

    def __init__(self,
                 *args,
                 num_frames: int,
                 category_map: Optional[Dict[int, str]] = None,
                 **kwargs) -> None:
        if not (isinstance(num_frames, int) and num_frames >= 1):
            raise ValueError(
                f'num_frames must be an int >= 1, got {num_frames!r}')
        self.num_frames = num_frames
        self.category_map = category_map
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read the COCO file into one single-frame dict per image.

        The frame is repeated ``num_frames`` times by
        :meth:`get_data_info`, so the data list holds each image once.

        Returns:
            list[dict]: ``dict(video_id, image=frame info)`` per image, in
            file order.
        """
        ann = self._load_json()
        source = f"'{self.ann_file}'"
        for key in ('images', 'annotations', 'categories'):
            if not isinstance(_require(ann, key, source), list):
                raise ValueError(f"{source}: '{key}' must be a list")
        cat2label = self._set_classes(ann['categories'])
        images = self._parse_images(ann['images'])
        num_kept = self._parse_annotations(ann['annotations'], images,
                                           cat2label)
        print_log(
            f"{self.ann_file}: {len(images)} images, {len(ann['annotations'])}"
            f' annotations ({num_kept} of mapped categories), '
            f"{len(self._metainfo['classes'])} classes, as "
            f'{self.num_frames}-frame pseudo-videos', 'current')
        return [
            dict(video_id=image['img_id'], image=image)
            for image in images.values()
        ]

    def get_data_info(self, idx: int) -> dict:
        """The image at ``idx`` as a ``num_frames``-frame video.

        Args:
            idx (int): Index of the image.

        Returns:
            dict: ``dict(video_id, video_length, images)``, the structure of
            the video datasets, with ``frame_id`` 0..T-1.
        """
        info = super().get_data_info(idx)
        image = info.pop('image')
        # Own copies per frame: the pipeline edits frame infos in place.
        info['images'] = [
            dict(copy.deepcopy(image), frame_id=frame_id)
            for frame_id in range(self.num_frames)
        ]
        info['video_length'] = self.num_frames
        return info

    def filter_data(self) -> List[dict]:
        """Drop images without instances if ``filter_empty_gt`` (train).

        Returns:
            list[dict]: The images kept.
        """
        cfg = self.filter_cfg or {}
        unknown = sorted(set(cfg) - set(_FILTER_KEYS))
        if unknown:
            raise ValueError(
                f'{type(self).__name__}: unknown filter_cfg keys {unknown}; '
                f'supported: {list(_FILTER_KEYS)}')
        if not self.data_list:
            raise ValueError(f"'{self.ann_file}' contains no images")
        if self.test_mode or not cfg.get('filter_empty_gt', False):
            return self.data_list
        kept = [info for info in self.data_list if info['image']['instances']]
        print_log(
            f'{self.ann_file}: dropped {len(self.data_list) - len(kept)} of '
            f'{len(self.data_list)} images without instances of the classes '
            '(filter_empty_gt=True)', 'current')
        if not kept:
            raise ValueError(
                f"'{self.ann_file}': no image with instances is left after "
                'filtering; check category_map and metainfo classes '
                f"{list(self._metainfo['classes'])}")
        return kept

    def _load_json(self) -> dict:
        """Read and decode the annotation file, with errors naming it."""
        if not self.ann_file:
            raise ValueError(f'{type(self).__name__} needs an ann_file')
        return load_json_object(self.ann_file, self.backend_args,
                                "a COCO JSON object with 'images', "
                                "'annotations' and 'categories'")

    def _set_classes(self, categories: List[dict]) -> Dict[int, int]:
        """Fill metainfo ``classes``; return image category id -> label."""
        names = category_names(categories, self.ann_file)
        classes = self._metainfo.get('classes')
        if self.category_map is None:
            name2id = {name: cat_id for cat_id, name in names.items()}
            if classes is None:
                classes = [names[i] for i in sorted(names)]
            missing = [name for name in classes if name not in name2id]
            if missing:
                raise ValueError(
                    f"metainfo classes {missing} are not categories of "
                    f"'{self.ann_file}' (it has {sorted(name2id)}); give a "
                    'category_map to map differently named categories')
            cat2label = {name2id[name]: i for i, name in enumerate(classes)}
        else:
            if classes is None:
                raise ValueError(
                    f'{type(self).__name__}: a category_map needs the '
                    "target classes in metainfo['classes']")
            label_of = {name: i for i, name in enumerate(classes)}
            cat2label = {}
            for cat_id, name in self.category_map.items():
                # Config keys may come back as strings (e.g. from JSON).
                cat_id = int(cat_id)
                if cat_id not in names:
                    raise ValueError(
                        f'category_map: {cat_id} is not a category id of '
                        f"'{self.ann_file}' (it has {sorted(names)})")
                if name not in label_of:
                    raise ValueError(
                        f"category_map: {cat_id} ({names[cat_id]!r}) maps "
                        f'to {name!r}, which is not in metainfo classes '
                        f'{list(classes)}')
                cat2label[cat_id] = label_of[name]
        self._metainfo['classes'] = tuple(classes)
        return cat2label

    def _parse_images(self, images: List[dict]) -> Dict[int, dict]:
        """Frame infos (without instances) keyed by image id."""
        img_prefix = self.data_prefix.get('img_path') or ''
        infos = {}
        for i, image in enumerate(images):
            img_id = _require(image, 'id', f"'{self.ann_file}' image #{i}")
            what = f"'{self.ann_file}' image id {img_id}"
            file_name = _require(image, 'file_name', what)
            height = _require(image, 'height', what)
            width = _require(image, 'width', what)
            if img_id in infos:
                raise ValueError(f'{what}: duplicate image id')
            infos[img_id] = dict(
                img_id=img_id,
                img_path=osp.join(img_prefix, file_name),
                height=height,
                width=width,
                frame_id=0,
                video_id=img_id,
                instances=[])
        return infos

    def _parse_annotations(self, annotations: List[dict],
                           images: Dict[int, dict],
                           cat2label: Dict[int, int]) -> int:
        """Add the instances of mapped categories to their images.

        Returns:
            int: Number of annotations kept.
        """
        ann_ids = set()
        num_kept = 0
        for i, ann in enumerate(annotations):
            what = (f"'{self.ann_file}' annotation id {ann['id']}"
                    if isinstance(ann, dict) and 'id' in ann else
                    f"'{self.ann_file}' annotation #{i}")
            for key in ('id', 'image_id', 'category_id', 'bbox',
                        'segmentation'):
                _require(ann, key, what)
            if ann['id'] in ann_ids:
                raise ValueError(f'{what}: duplicate annotation id')
            ann_ids.add(ann['id'])
            image = images.get(ann['image_id'])
            if image is None:
                raise ValueError(f"{what}: unknown image_id {ann['image_id']}")
            label = cat2label.get(ann['category_id'])
            if label is None:
                continue
            bbox = ann['bbox']
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise ValueError(
                    f'{what}: bbox must be [x, y, w, h], got {bbox}')
            segm = ann['segmentation']
            if isinstance(segm, dict):
                if 'counts' not in segm or 'size' not in segm:
                    raise ValueError(f"{what}: RLE segmentation needs "
                                     "'counts' and 'size'")
                size = [image['height'], image['width']]
                if list(segm['size']) != size:
                    raise ValueError(
                        f"{what}: RLE size {list(segm['size'])} differs from "
                        f"image {ann['image_id']}'s size {size} "
                        '(height, width)')
            elif not isinstance(segm, list):
                raise ValueError(
                    f'{what}: segmentation must be an RLE dict or a polygon '
                    f'list, got {type(segm).__name__}')
            x, y, w, h = bbox
            # Degenerate boxes, as mmdet's CocoDataset skips them.
            if w < 1 or h < 1:
                continue
            image['instances'].append(
                dict(
                    bbox=[x, y, x + w, y + h],
                    bbox_label=label,
                    mask=segm,
                    instance_id=ann['id'],
                    ignore_flag=int(bool(ann.get('iscrowd', 0)))))
            num_kept += 1
        return num_kept
