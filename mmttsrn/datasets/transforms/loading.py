"""Loading video frames: one frame with errors that name it and its video,
or a whole test video lazily."""
from typing import Iterator, List, Optional

import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import BaseTransform, Compose, LoadImageFromFile
from mmdet.registry import TRANSFORMS

__all__ = ['LoadVideoFrame', 'LazyVideoFrames', 'VideoFrameReader']


@TRANSFORMS.register_module()
class LoadVideoFrame(LoadImageFromFile):
    """Load one video frame, like mmcv's ``LoadImageFromFile``.

    A missing frame raises ``FileNotFoundError`` and an undecodable one
    ``ValueError``, both naming the file and its ``video_id``. If the frame
    info has ``height``/``width`` (from the annotation file), the decoded
    size must match them, since the masks are stored at that size.

    Required Keys:

    - img_path
    - video_id (optional, for error messages)
    - height, width (optional, checked against the image)

    Modified Keys:

    - img
    - img_shape
    - ori_shape

    Args:
        check_size (bool): Check the decoded size against ``height`` and
            ``width``. Defaults to True.
        **kwargs: Passed to ``mmcv.transforms.LoadImageFromFile``
            (``to_float32``, ``color_type``, ``imdecode_backend``,
            ``ignore_empty``, ``backend_args``).
    """

    def __init__(self, check_size: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.check_size = check_size

    def transform(self, results: dict) -> Optional[dict]:
        """Load the frame.

        Args:
            results (dict): One frame's info.

        Returns:
            dict | None: The info with the image, or None for a missing or
            broken frame when ``ignore_empty`` is set.
        """
        filename = results['img_path']
        frame = f"frame '{filename}' of video {results.get('video_id')}"
        try:
            img_bytes = self._get_bytes(filename)
        except FileNotFoundError as e:
            if self.ignore_empty:
                return None
            raise FileNotFoundError(f'{frame} not found') from e
        try:
            img = mmcv.imfrombytes(
                img_bytes, flag=self.color_type, backend=self.imdecode_backend)
        except Exception:  # decoders raise many error types
            img = None
        if img is None:
            if self.ignore_empty:
                return None
            raise ValueError(f'cannot decode {frame}: the file is corrupt '
                             'or not an image')
        expected = (results.get('height'), results.get('width'))
        if self.check_size and None not in expected and \
                tuple(img.shape[:2]) != expected:
            raise ValueError(
                f'{frame} is {img.shape[0]}x{img.shape[1]} (h x w) but the '
                f'annotation file says {expected[0]}x{expected[1]}')
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def _get_bytes(self, filename: str) -> bytes:
        """Read a file through the configured file backend."""
        if self.file_client_args is not None:
            client = fileio.FileClient.infer_client(self.file_client_args,
                                                    filename)
            return client.get(filename)
        return fileio.get(filename, backend_args=self.backend_args)

    def __repr__(self) -> str:
        return (f'{super().__repr__()[:-1]}, '
                f'check_size={self.check_size})')


class VideoFrameReader:
    """The frames of one test video, each run through a frame pipeline
    when iterated.

    Args:
        results (dict): The video's per-frame lists, as
            ``BaseVideoDataset`` gives them in test mode (``img_path``,
            ``img_id``, ``frame_id``, ``instances``...).
        pipeline (Compose): Takes a one-frame video (the same dict with
            lists of one) to a packed one-frame sample.
    """

    def __init__(self, results: dict, pipeline: Compose) -> None:
        self.results = results
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.results['img_id'])

    def __iter__(self) -> Iterator[dict]:
        """Packed frames: ``inputs`` (1, C, H, W) and ``data_samples``, a
        one-frame ``TrackDataSample``."""
        num_frames = len(self)
        for t in range(num_frames):
            frame = {
                key: [value[t]] if isinstance(value, list)
                and len(value) == num_frames else value
                for key, value in self.results.items()
            }
            yield self.pipeline(frame)

    def __repr__(self) -> str:
        return f'{type(self).__name__}({len(self)} frames)'


@TRANSFORMS.register_module()
class LazyVideoFrames(BaseTransform):
    """Leave a test video's frames unread until the model reads them.

    Wraps a whole-video test pipeline: instead of every frame of the video
    loaded and stacked, the sample's ``inputs`` is a
    :class:`VideoFrameReader` that runs ``frame_pipeline`` on one frame at a
    time; ``TTSRN.test_step`` reads it window by window, so memory does not
    grow with the video's length (``tools/test.py`` wraps the test pipeline
    in it).

    Required Keys: the per-frame lists of a test video, with ``img_id``.

    Added Keys: inputs

    Args:
        frame_pipeline (list[dict]): The test pipeline, e.g.
            ``[TransformBroadcaster(LoadVideoFrame, Resize, ...),
            PackTrackInputs]``; it is run on one-frame videos.
    """

    def __init__(self, frame_pipeline: List[dict]) -> None:
        self.frame_pipeline = Compose(frame_pipeline)

    def transform(self, results: dict) -> dict:
        return dict(inputs=VideoFrameReader(results, self.frame_pipeline))

    def __repr__(self) -> str:
        return f'{type(self).__name__}(frame_pipeline={self.frame_pipeline})'
