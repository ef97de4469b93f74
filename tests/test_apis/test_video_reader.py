"""VideoFrames: frames of a video file, a folder or a list, read lazily."""
import cv2
import mmcv
import numpy as np
import pytest

from mmttsrn.apis import VideoFrames


def _frames(num, h=24, w=32):
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(num)
    ]


def test_a_list_of_arrays_or_paths(tmp_path):
    frames = _frames(3)
    paths = []
    for i, frame in enumerate(frames):
        paths.append(str(tmp_path / f'f{i}.png'))
        mmcv.imwrite(frame, paths[-1])
    for source in (frames, paths):
        video = VideoFrames(source)
        assert len(video) == 3
        # Iterable again and again, the same frames each time.
        for _ in range(2):
            read = list(video)
            assert all(np.array_equal(a, b) for a, b in zip(read, frames))
    assert VideoFrames(paths).name(1) == 'f1.png'
    assert VideoFrames(frames).name(1) == '000001.jpg'


def test_a_folder_in_file_name_order(tmp_path):
    for i, frame in enumerate(_frames(3)):
        mmcv.imwrite(frame, str(tmp_path / f'{2 - i:02d}.png'))
    (tmp_path / 'notes.txt').write_text('not a frame')
    video = VideoFrames(str(tmp_path))
    assert len(video) == 3 and video.fps is None
    assert [video.name(i) for i in range(3)] == ['00.png', '01.png', '02.png']
    assert np.array_equal(next(iter(video)), _frames(3)[2])


def test_a_video_file_is_decoded_one_frame_at_a_time(tmp_path):
    path = str(tmp_path / 'in.mp4')
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 7,
                             (32, 24))
    for frame in _frames(5):
        writer.write(frame)
    writer.release()
    video = VideoFrames(path)
    assert len(video) == 5 and video.fps == 7
    frames = iter(video)
    assert next(frames).shape == (24, 32, 3)
    assert len(list(frames)) == 4
    assert video.name(4) == '000004.jpg'


def test_errors_name_the_frame(tmp_path):
    with pytest.raises(ValueError, match='at least one frame'):
        VideoFrames([])
    with pytest.raises(FileNotFoundError, match='no .* frames in folder'):
        VideoFrames(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='missing.mp4'):
        VideoFrames(str(tmp_path / 'missing.mp4'))
    (tmp_path / 'broken.mp4').write_text('not a video')
    with pytest.raises(ValueError, match='broken.mp4'):
        list(VideoFrames(str(tmp_path / 'broken.mp4')))
    with pytest.raises(ValueError, match='frame 1 is .* same size'):
        list(VideoFrames(_frames(1) + _frames(1, h=16)))
    with pytest.raises(ValueError, match=r'frame 0 must be \(H, W, 3\)'):
        list(VideoFrames([np.zeros((8, 8), np.uint8)]))
    with pytest.raises(TypeError, match='frame 0 must be an image array'):
        list(VideoFrames([3]))
