"""Loading a video frame with errors that name the frame and its video."""
from typing import Optional

import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmdet.registry import TRANSFORMS

__all__ = ['LoadVideoFrame']


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
