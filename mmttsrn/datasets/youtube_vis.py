"""YouTube-VIS dataset reading the official JSON files directly."""
import json
import logging
import os.path as osp
import re
from numbers import Real
from typing import Dict, List, Optional, Sequence, Tuple

import mmengine.fileio as fileio
import numpy as np
import pycocotools.mask as mask_utils
from mmdet.datasets import BaseVideoDataset
from mmdet.registry import DATASETS
from mmengine.logging import print_log

__all__ = ['YouTubeVISOfficialDataset']

# Keys of ``filter_cfg`` this dataset understands.
_FILTER_KEYS = ('filter_empty_gt', )
# pycocotools writes compressed RLE counts with the characters 48..111.
_RLE_STRING = re.compile('[0-o]+')
# How far (pixels) a box may reach past the image before it is replaced.
_BOX_TOLERANCE = 1.0


def _decode_rle_string(counts: str) -> Optional[np.ndarray]:
    """The run lengths of a compressed RLE string, or None if malformed.

    Mirrors pycocotools' ``rleFrString`` (5 bits a character, 0x20 marks
    that more follow, 0x10 in the last one is the sign; from the third run
    on, each run is stored relative to the run two before), vectorised.
    """
    if not _RLE_STRING.fullmatch(counts):
        return None
    chars = np.frombuffer(counts.encode('ascii'), np.uint8).astype(
        np.int64) - 48
    more = (chars & 0x20) != 0
    if more[-1]:
        return None
    ends = np.flatnonzero(~more)
    starts = np.r_[0, ends[:-1] + 1]
    digit = np.arange(len(chars)) - np.repeat(starts, ends - starts + 1)
    if digit.max() > 11:  # beyond 64 bits
        return None
    runs = np.add.reduceat((chars & 0x1f) << (5 * digit), starts)
    negative = (chars[ends] & 0x10) != 0
    runs[negative] -= 1 << (5 * (digit[ends][negative] + 1))
    runs[1::2] = np.cumsum(runs[1::2])
    runs[2::2] = np.cumsum(runs[2::2])
    return runs


def _rle_error(segm: dict, height: int, width: int) -> Optional[str]:
    """Why an RLE dict cannot be a ``height x width`` mask, or None.

    pycocotools does not check the counts: runs that do not add up to the
    image size make it write past its buffer, or read garbage, later.
    """
    counts = segm['counts']
    if isinstance(counts, str):
        runs = _decode_rle_string(counts)
        if runs is None:
            return 'RLE counts is not a valid compressed RLE string'
        lowest, total = int(runs.min()), int(runs.sum())
    elif isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool)
                   for c in counts):
            return 'RLE counts must be integers'
        lowest, total = min(counts, default=0), sum(counts)
    else:
        return ('RLE counts must be a string or a list of integers, got '
                f'{type(counts).__name__}')
    if lowest < 0 or total != height * width:
        return (f'RLE counts do not describe a {height}x{width} mask (runs '
                f'must be >= 0 and add up to {height * width}, got sum '
                f'{total})')
    return None


def _box_in_image(bbox: Sequence, height: int, width: int) -> bool:
    x, y, w, h = bbox
    tol = _BOX_TOLERANCE
    return (w > 0 and h > 0 and x >= -tol and y >= -tol
            and x + w <= width + tol and y + h <= height + tol)


def _require(record: dict, key: str, what: str):
    """Return ``record[key]`` or raise an error naming the key and record."""
    if not isinstance(record, dict):
        raise ValueError(f'{what}: expected a JSON object, got '
                         f'{type(record).__name__}')
    if key not in record:
        raise ValueError(f"{what}: missing '{key}'")
    return record[key]


def load_json_object(path: str, backend_args: Optional[dict],
                     what: str) -> dict:
    """Read a JSON file that must hold an object, with errors naming it.

    Args:
        path (str): The file.
        backend_args (dict, optional): mmengine file backend arguments.
        what (str): What the object should be, for the error message.

    Returns:
        dict: The decoded object.
    """
    if not fileio.exists(path, backend_args=backend_args):
        raise FileNotFoundError(f'annotation file not found: {path}')
    text = fileio.get_text(path, backend_args=backend_args)
    try:
        ann = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"'{path}' is not valid JSON: {e}") from e
    if not isinstance(ann, dict):
        raise ValueError(
            f"'{path}' must hold {what}, got a {type(ann).__name__}")
    return ann


def category_names(categories: List[dict], ann_file: str) -> Dict[int, str]:
    """Category id -> name of an annotation file's ``categories``, with
    errors naming the file and the entry.

    Args:
        categories (list[dict]): The file's ``categories``.
        ann_file (str): The file, for the error messages.

    Returns:
        dict[int, str]: The names by category id, in the file's order.
    """
    names = {}
    for i, cat in enumerate(categories):
        what = f"'{ann_file}' category #{i}"
        cat_id = _require(cat, 'id', what)
        name = _require(cat, 'name', what)
        if cat_id in names:
            raise ValueError(f"'{ann_file}': duplicate category id {cat_id}")
        names[cat_id] = name
    return names


@DATASETS.register_module()
class YouTubeVISOfficialDataset(BaseVideoDataset):
    """YouTube-VIS (2019/2021 and same-format sets) from the official JSON.

    Reads ``train.json`` / ``valid.json`` / ``test.json`` as downloaded::

        {"videos": [{"id", "width", "height", "length", "file_names"}],
         "annotations": [{"id", "video_id", "category_id",
                          "segmentations": [RLE | polygons | null] * length,
                          "bboxes": [[x, y, w, h] | null] * length,
                          "areas", "iscrowd"}],
         "categories": [{"id", "name"}]}

    ``annotations`` may be absent or null (the server's valid/test splits;
    OVIS writes null). Each
    item of ``data_list`` is one video in the structure mmdet's video
    pipeline expects::

        dict(video_id, video_length,
             images=[dict(img_id, img_path, height, width, frame_id,
                          video_id,
                          instances=[dict(bbox=[x1, y1, x2, y2],
                                          bbox_label, mask, instance_id,
                                          ignore_flag)])])

    ``img_id`` is unique over the dataset, ``instance_id`` is the official
    annotation id and ``mask`` the segmentation as stored in the file. A
    frame whose segmentation is null (or empty) carries no instance for that
    annotation; a null box is computed from the mask, and so is a box with
    ``w <= 0`` or ``h <= 0`` or outside the image (a warning gives their
    number). RLE masks are checked when the file is read: counts that do not
    describe a mask of the video's size are an error naming the annotation.

    The classes are the file's categories sorted by id unless
    ``metainfo['classes']`` names a subset (annotations of other categories
    are then skipped). ``metainfo['cat_ids']`` holds the category id of each
    class; a label is an index into it (any ids work:
    ``YouTubeVISResultsMetric`` writes them back; mmdet's own
    ``YouTubeVISMetric`` writes ``label + 1``, right only for ids 1..K).
    ``metainfo['has_annotations']`` is False for a file without
    ``annotations`` (the metric then does not score it).

    With ``filter_cfg=dict(filter_empty_gt=True)`` (outside test mode),
    videos without any instance are dropped; frames are never dropped, so
    clips stay contiguous in time. In test mode every video is kept.

    Args:
        dataset_version (str, optional): Informative tag (e.g. '2019')
            stored in ``metainfo['dataset_version']``. Defaults to None.
        *args: Passed to :class:`mmdet.datasets.BaseVideoDataset`.
        **kwargs: Passed to :class:`mmdet.datasets.BaseVideoDataset`
            (``ann_file``, ``data_root``, ``data_prefix=dict(img_path=...)``,
            ``metainfo``, ``filter_cfg``, ``test_mode``, ``pipeline``,
            ``backend_args``, ...).
    """

    METAINFO = dict(classes=None)

    def __init__(self,
                 *args,
                 dataset_version: Optional[str] = None,
                 **kwargs) -> None:
        self.dataset_version = dataset_version
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read the annotation file into per-video dicts.

        Returns:
            list[dict]: One dict per video, in file order.
        """
        ann = self._load_json()
        source = f"'{self.ann_file}'"
        videos = _require(ann, 'videos', source)
        categories = _require(ann, 'categories', source)
        for key, value in (('videos', videos), ('categories', categories)):
            if not isinstance(value, list):
                raise ValueError(f"{source}: '{key}' must be a list")
        self._set_classes(categories)
        video_infos = self._parse_videos(videos)
        # OVIS's unannotated splits store "annotations": null.
        annotations = ann.get('annotations')
        self._has_annotations = annotations is not None
        if annotations is None:
            annotations = []
        if not isinstance(annotations, list):
            raise ValueError(f"{source}: 'annotations' must be a list")
        self._metainfo['has_annotations'] = self._has_annotations
        self._parse_annotations(annotations, video_infos, categories)
        data_list = list(video_infos.values())
        num_frames = sum(video['video_length'] for video in data_list)
        print_log(
            f'{self.ann_file}: {len(data_list)} videos, {num_frames} frames, '
            f'{len(annotations)} annotations, '
            f"{len(self._metainfo['classes'])} classes", 'current')
        return data_list

    def filter_data(self) -> List[dict]:
        """Drop videos without instances if ``filter_empty_gt`` (train).

        Returns:
            list[dict]: The videos kept.

        Raises:
            ValueError: On unknown ``filter_cfg`` keys, or when no video is
                left.
        """
        cfg = self.filter_cfg or {}
        unknown = sorted(set(cfg) - set(_FILTER_KEYS))
        if unknown:
            raise ValueError(
                f'{type(self).__name__}: unknown filter_cfg keys {unknown}; '
                f'supported: {list(_FILTER_KEYS)}')
        data_list = self.data_list
        if not data_list:
            raise ValueError(f"'{self.ann_file}' contains no videos")
        if self.test_mode or not cfg.get('filter_empty_gt', False):
            return data_list
        kept = [
            video for video in data_list
            if any(frame['instances'] for frame in video['images'])
        ]
        print_log(
            f'{self.ann_file}: dropped {len(data_list) - len(kept)} of '
            f'{len(data_list)} videos without instances '
            '(filter_empty_gt=True)', 'current')
        if not kept:
            if not self._has_annotations:
                hint = ("it has no 'annotations' (the server's valid/test "
                        'splits are unannotated): use test_mode=True for '
                        'it, or train on an annotated file')
            else:
                hint = ('check that metainfo classes match its categories '
                        f"{list(self._metainfo['classes'])}, or set "
                        'filter_cfg=dict(filter_empty_gt=False)')
            raise ValueError(f"'{self.ann_file}': no video with instances "
                             f'is left after filtering; {hint}')
        return kept

    def _load_json(self) -> dict:
        """Read and decode the annotation file, with errors naming it."""
        if not self.ann_file:
            raise ValueError(f'{type(self).__name__} needs an ann_file')
        return load_json_object(self.ann_file, self.backend_args,
                                "a JSON object with 'videos' and "
                                "'categories'")

    def _set_classes(self, categories: List[dict]) -> None:
        """Fill ``classes``, ``cat_ids`` (and the version) in metainfo."""
        names = category_names(categories, self.ann_file)
        classes = self._metainfo.get('classes')
        if classes is None:
            cat_ids = sorted(names)
            classes = tuple(names[i] for i in cat_ids)
        else:
            name2id = {name: cat_id for cat_id, name in names.items()}
            missing = [name for name in classes if name not in name2id]
            if missing:
                raise ValueError(
                    f"metainfo classes {missing} are not categories of "
                    f"'{self.ann_file}' (it has {sorted(name2id)})")
            cat_ids = [name2id[name] for name in classes]
            classes = tuple(classes)
        self.cat_ids = cat_ids
        self.cat2label = {cat_id: i for i, cat_id in enumerate(cat_ids)}
        self._metainfo.update(classes=classes, cat_ids=list(cat_ids))
        if self.dataset_version is not None:
            self._metainfo['dataset_version'] = self.dataset_version

    def _parse_videos(self, videos: List[dict]) -> Dict[int, dict]:
        """Build the per-video dicts with their (instance-less) frames."""
        img_prefix = self.data_prefix.get('img_path') or ''
        video_infos = {}
        img_id = 0
        for i, video in enumerate(videos):
            video_id = _require(video, 'id', f"'{self.ann_file}' video #{i}")
            what = f"'{self.ann_file}' video id {video_id}"
            file_names = _require(video, 'file_names', what)
            height = _require(video, 'height', what)
            width = _require(video, 'width', what)
            if video_id in video_infos:
                raise ValueError(f'{what}: duplicate video id')
            if not isinstance(file_names, list) or not file_names:
                raise ValueError(f"{what}: 'file_names' must be a non-empty "
                                 'list')
            if video.get('length', len(file_names)) != len(file_names):
                raise ValueError(
                    f"{what}: 'length' is {video['length']} but there are "
                    f'{len(file_names)} file_names')
            images = []
            for frame_id, file_name in enumerate(file_names):
                images.append(
                    dict(
                        img_id=img_id,
                        img_path=osp.join(img_prefix, file_name),
                        height=height,
                        width=width,
                        frame_id=frame_id,
                        video_id=video_id,
                        instances=[]))
                img_id += 1
            video_infos[video_id] = dict(
                video_id=video_id, video_length=len(images), images=images)
        return video_infos

    def _parse_annotations(self, annotations: List[dict],
                           video_infos: Dict[int, dict],
                           categories: List[dict]) -> None:
        """Add each annotation's per-frame instances to its video's frames."""
        known_cats = {cat['id'] for cat in categories}
        ann_ids = set()
        self._replaced_boxes = []
        for i, ann in enumerate(annotations):
            what = (f"'{self.ann_file}' annotation id {ann['id']}"
                    if isinstance(ann, dict) and 'id' in ann else
                    f"'{self.ann_file}' annotation #{i}")
            for key in ('id', 'video_id', 'category_id', 'segmentations'):
                _require(ann, key, what)
            if ann['id'] in ann_ids:
                raise ValueError(f'{what}: duplicate annotation id')
            ann_ids.add(ann['id'])
            video = video_infos.get(ann['video_id'])
            if video is None:
                raise ValueError(f"{what}: unknown video_id {ann['video_id']}")
            if ann['category_id'] not in known_cats:
                raise ValueError(
                    f"{what}: unknown category_id {ann['category_id']} "
                    f'(categories: {sorted(known_cats)})')
            if ann['category_id'] not in self.cat2label:
                continue
            length = video['video_length']
            segmentations = ann['segmentations']
            bboxes = ann.get('bboxes')
            if bboxes is None:
                bboxes = [None] * length
            for key, value in (('segmentations', segmentations), ('bboxes',
                                                                  bboxes)):
                if not isinstance(value, list):
                    raise ValueError(f"{what}: '{key}' must be a list")
                if len(value) != length:
                    raise ValueError(f'{what}: {len(value)} {key} but video '
                                     f"{ann['video_id']} has {length} frames")
            for frame, segm, bbox in zip(video['images'], segmentations,
                                         bboxes):
                if segm is None or segm == []:
                    continue
                instance = self._parse_instance(
                    ann, segm, bbox, frame, f"{what}, frame "
                    f"{frame['frame_id']}")
                if instance is not None:
                    frame['instances'].append(instance)
        if self._replaced_boxes:
            print_log(
                f"'{self.ann_file}': {len(self._replaced_boxes)} boxes with "
                'w <= 0 or h <= 0 or outside the image were replaced by the '
                'boxes of their masks (first: annotation id '
                f'{self._replaced_boxes[0][0]}, frame '
                f'{self._replaced_boxes[0][1]})',
                'current',
                level=logging.WARNING)

    def _parse_instance(self, ann: dict, segm, bbox: Optional[Sequence],
                        frame: dict, what: str) -> Optional[dict]:
        """One frame's instance of an annotation, or None if it is empty."""
        height, width = frame['height'], frame['width']
        if isinstance(segm, dict):
            if 'counts' not in segm or 'size' not in segm:
                raise ValueError(f"{what}: RLE segmentation needs 'counts' "
                                 "and 'size'")
            if list(segm['size']) != [height, width]:
                raise ValueError(
                    f"{what}: RLE size {list(segm['size'])} differs from the "
                    f'video size [{height}, {width}] (height, width)')
            error = _rle_error(segm, height, width)
            if error is not None:
                raise ValueError(f'{what}: {error}')
        elif not isinstance(segm, list):
            raise ValueError(
                f'{what}: segmentation must be an RLE dict, a '
                f'polygon list or null, got {type(segm).__name__}')
        if bbox is None:
            bbox = self._mask_to_bbox(segm, height, width)
        elif not isinstance(bbox, list) or len(bbox) != 4 or not all(
                isinstance(v, Real) for v in bbox):
            raise ValueError(f'{what}: bbox must be [x, y, w, h], got {bbox}')
        elif not _box_in_image(bbox, height, width):
            bbox = self._mask_to_bbox(segm, height, width)
            self._replaced_boxes.append((ann['id'], frame['frame_id']))
        x, y, w, h = bbox
        if w <= 0 or h <= 0:
            return None
        return dict(
            bbox=[x, y, x + w, y + h],
            bbox_label=self.cat2label[ann['category_id']],
            mask=segm,
            instance_id=ann['id'],
            ignore_flag=int(bool(ann.get('iscrowd', 0))))

    @staticmethod
    def _mask_to_bbox(segm, height: int, width: int) -> Tuple[float]:
        """[x, y, w, h] box of an RLE (str/list counts) or polygon mask."""
        if isinstance(segm, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
        elif isinstance(segm['counts'], list):
            rle = mask_utils.frPyObjects(segm, height, width)
        else:
            rle = segm
        return tuple(mask_utils.toBbox(rle).tolist())
