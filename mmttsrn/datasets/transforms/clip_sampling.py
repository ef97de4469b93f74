"""Sampling a clip of consecutive frames from a video for training."""
import copy
import random
from typing import Dict, List, Optional

import numpy as np
from mmdet.datasets.transforms import BaseFrameSample
from mmdet.registry import TRANSFORMS

__all__ = ['ClipFrameSample']


@TRANSFORMS.register_module()
class ClipFrameSample(BaseFrameSample):
    """Sample a clip of ``num_frames`` frames, ``stride`` apart, in order.

    The clip starts at a random frame (or, when the dataset gives a
    ``key_frame_id``, at that frame, moved back if the clip would run past
    the end). If the video is too short for ``stride``, the largest stride
    that fits is used; if it has fewer than ``num_frames`` frames, frames are
    repeated in time order (indices ``linspace(0, L, T, endpoint=False)``),
    so every frame appears and the clip still has ``num_frames`` frames.

    The output has mmdet's ``BaseFrameSample.prepare_data`` format (a dict
    of per-frame lists, ``video_length`` = T and ``ori_video_length`` = L),
    ready for ``TransformBroadcaster`` and ``PackTrackInputs``. Instances are
    not aligned here: a frame simply lacks the instances absent from it, and
    the model matches instance sequences across the clip by
    ``instance_id``.

    Required Keys:

    - images (list[dict]): per-frame infos of the whole video
    - video_length
    - key_frame_id (optional)
    - the keys in ``collect_video_keys``

    Args:
        num_frames (int): Frames per clip T.
        stride (int): Frame step between clip frames. Defaults to 1.
        collect_video_keys (list[str]): Video-level keys copied into every
            frame. Defaults to ['video_id', 'video_length'].
    """

    def __init__(
            self,
            num_frames: int,
            stride: int = 1,
            collect_video_keys: List[str] = ['video_id',
                                             'video_length']) -> None:
        if not (isinstance(num_frames, int) and num_frames >= 1):
            raise ValueError(
                f'num_frames must be an int >= 1, got {num_frames!r}')
        if not (isinstance(stride, int) and stride >= 1):
            raise ValueError(f'stride must be an int >= 1, got {stride!r}')
        super().__init__(collect_video_keys=collect_video_keys)
        self.num_frames = num_frames
        self.stride = stride

    def sampling_frames(self,
                        video_length: int,
                        start: Optional[int] = None) -> List[int]:
        """Choose the frame indices of a clip.

        Args:
            video_length (int): Number of frames L of the video.
            start (int, optional): Wanted first frame; random if None.

        Returns:
            list[int]: ``num_frames`` non-decreasing frame indices.
        """
        if video_length < 1:
            raise ValueError('cannot sample a clip from a video without '
                             'frames')
        if video_length < self.num_frames:
            return np.linspace(
                0, video_length, self.num_frames,
                endpoint=False).astype(int).tolist()
        stride = self.stride
        if (self.num_frames - 1) * stride + 1 > video_length:
            stride = (video_length - 1) // (self.num_frames - 1)
        span = (self.num_frames - 1) * stride + 1
        last_start = video_length - span
        if start is None:
            start = random.randint(0, last_start)
        start = min(max(start, 0), last_start)
        return list(range(start, start + span, stride))

    def transform(self, video_infos: dict) -> Dict[str, List]:
        """Sample a clip from a video.

        Args:
            video_infos (dict): The whole video information.

        Returns:
            dict[str, list]: Per-frame lists of the clip's frame infos.
        """
        images = video_infos['images']
        inds = self.sampling_frames(
            len(images), start=video_infos.get('key_frame_id'))
        # Repeated frames get their own copies, as later transforms edit
        # the frame infos in place.
        clip = dict(
            video_infos, images=[copy.deepcopy(images[i]) for i in inds])
        return self.prepare_data(clip, list(range(len(inds))))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_frames={self.num_frames}, '
                f'stride={self.stride}, '
                f'collect_video_keys={self.collect_video_keys})')
