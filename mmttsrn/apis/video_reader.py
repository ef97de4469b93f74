"""The frames of a video file, a frame folder or a list, read lazily."""
import os
import os.path as osp
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import mmcv
import numpy as np

__all__ = ['FRAME_EXTENSIONS', 'FrameType', 'VideoFrames']

#: File endings of the frames of a frame folder.
FRAME_EXTENSIONS = ('.jpg', '.jpeg', '.png')

FrameType = Union[np.ndarray, str, Path]


class VideoFrames:
    """The frames of one video, read one at a time on each iteration.

    Nothing but the frame being read is held, so a video of any length can
    be iterated (several times: a video file is opened again each time).

    Args:
        source (str | Path | Sequence): A video file (anything OpenCV
            decodes), a folder of ``.jpg``/``.jpeg``/``.png`` frames (in file
            name order), or the frames themselves: BGR (H, W, 3) uint8 arrays
            or image paths.

    Attributes:
        fps (float | None): The frame rate of a video file, else None.

    Iterating yields the frames as BGR (H, W, 3) uint8 arrays; a frame that
    cannot be read, or whose size differs from the first frame's, raises an
    error naming it.
    """

    def __init__(self, source: Union[str, Path, Sequence[FrameType]]) -> None:
        self.fps: Optional[float] = None
        self._video: Optional[str] = None
        if isinstance(source, (str, Path)):
            path = str(source)
            if osp.isdir(path):
                names = sorted(
                    f for f in os.listdir(path)
                    if f.lower().endswith(FRAME_EXTENSIONS))
                if not names:
                    raise FileNotFoundError(
                        f'no {"/".join(FRAME_EXTENSIONS)} frames in folder '
                        f'{path}')
                self._frames: Sequence[FrameType] = [
                    osp.join(path, name) for name in names
                ]
                self._len = len(names)
                return
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'video file or frame folder {path} does not exist')
            reader = mmcv.VideoReader(path)
            if not reader.opened:
                raise ValueError(f'cannot open video {path}: not a video '
                                 'OpenCV can decode')
            self._video, self.fps = path, reader.fps
            self._frames = []
            self._len = reader.frame_cnt
            return
        if len(source) == 0:
            raise ValueError('a video needs at least one frame')
        self._frames = source
        self._len = len(source)

    def __len__(self) -> int:
        """Frames in the video (for a video file, as its header says)."""
        return self._len

    def name(self, index: int) -> str:
        """A file name for frame ``index``: the frame's own for a folder or
        paths, else ``000000.jpg``, ``000001.jpg``..."""
        if index < len(self._frames) and \
                isinstance(self._frames[index], (str, Path)):
            return osp.basename(str(self._frames[index]))
        return f'{index:06d}.jpg'

    def __iter__(self) -> Iterator[np.ndarray]:
        first: Optional[tuple] = None
        for i, frame in enumerate(self._read()):
            if frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f'frame {i} must be (H, W, 3) BGR, got '
                                 f'shape {frame.shape}')
            if first is None:
                first = frame.shape
            elif frame.shape != first:
                raise ValueError(
                    f'frame {i} is {frame.shape[:2]} (h, w) but frame 0 is '
                    f'{first[:2]}; all frames of a video must have the same '
                    'size')
            yield frame
        if first is None:
            raise ValueError(f'video {self._video} has no decodable frames')

    def _read(self) -> Iterator[np.ndarray]:
        if self._video is not None:
            # Decoding stops at the first frame that cannot be read.
            yield from mmcv.VideoReader(self._video)
            return
        for i, frame in enumerate(self._frames):
            if isinstance(frame, (str, Path)):
                if not osp.isfile(frame):
                    raise FileNotFoundError(f'frame {i} not found: {frame}')
                img = mmcv.imread(str(frame))
                if img is None:
                    raise ValueError(f'cannot read frame {i}: {frame}')
                frame = img
            elif not isinstance(frame, np.ndarray):
                raise TypeError(f'frame {i} must be an image array or a '
                                f'path, got {type(frame).__name__}')
            yield frame

    def __repr__(self) -> str:
        source = self._video or f'{len(self)} frames'
        return f'{type(self).__name__}({source})'
