"""LoadVideoFrame loads frames and names the frame and video on failure;
LazyVideoFrames leaves a test video's frames to be read one at a time."""
import copy
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import DATASETS
from mmengine.config import Config

from mmttsrn.datasets.transforms import LoadVideoFrame, VideoFrameReader


@pytest.fixture
def frame_file(tmp_path):
    path = tmp_path / 'vid' / '00000.jpg'
    path.parent.mkdir()
    img = np.zeros((12, 20, 3), dtype=np.uint8)
    img[:, :10] = (0, 0, 255)  # left half red (BGR)
    cv2.imwrite(str(path), img)
    return str(path)


def test_loads_bgr_frame(frame_file):
    results = LoadVideoFrame()(
        dict(img_path=frame_file, video_id=4, height=12, width=20))
    assert results['img'].shape == (12, 20, 3)
    assert results['img'].dtype == np.uint8
    assert results['img'][6, 2, 2] > 200 and results['img'][6, 15, 2] < 50
    assert results['ori_shape'] == results['img_shape'] == (12, 20)
    float_img = LoadVideoFrame(to_float32=True)(dict(img_path=frame_file))
    assert float_img['img'].dtype == np.float32


def test_missing_frame_names_file_and_video(tmp_path):
    path = str(tmp_path / 'vid' / '00007.jpg')
    with pytest.raises(
            FileNotFoundError,
            match=r"'.*vid/00007.jpg' of video 42 not found"):
        LoadVideoFrame()(dict(img_path=path, video_id=42))
    assert LoadVideoFrame(ignore_empty=True)(dict(img_path=path)) is None


@pytest.mark.parametrize('content', [b'', b'not a jpeg at all'])
def test_corrupt_frame_names_file(tmp_path, content):
    path = tmp_path / 'broken.jpg'
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r'cannot decode .*broken.jpg.* 5'):
        LoadVideoFrame()(dict(img_path=str(path), video_id=5))


def test_size_must_match_annotation(frame_file):
    with pytest.raises(ValueError, match='is 12x20 .* says 10x20'):
        LoadVideoFrame()(
            dict(img_path=frame_file, video_id=1, height=10, width=20))
    results = LoadVideoFrame(check_size=False)(
        dict(img_path=frame_file, height=10, width=20))
    assert results['img'].shape[:2] == (12, 20)


def test_lazy_video_frames_pack_the_frames_of_the_whole_video(
        synthetic_root):
    cfg = Config.fromfile(
        str(
            Path(__file__).parents[2] / 'configs' / '_base_' / 'datasets' /
            'synthetic_vis.py'))
    dataset_cfg = copy.deepcopy(cfg.val_dataloader.dataset)
    dataset_cfg.update(data_root=str(synthetic_root))
    whole = DATASETS.build(dataset_cfg)[1]
    dataset_cfg.update(pipeline=[
        dict(type='LazyVideoFrames', frame_pipeline=cfg.test_pipeline)
    ])
    lazy = DATASETS.build(dataset_cfg)[1]
    assert set(lazy) == {'inputs'}
    reader = lazy['inputs']
    assert isinstance(reader, VideoFrameReader)
    # Picklable, for DataLoader workers.
    reader = pickle.loads(pickle.dumps(reader))
    frames = whole['data_samples'].video_data_samples
    assert len(reader) == len(frames)
    for t, packed in enumerate(reader):
        frame, = packed['data_samples'].video_data_samples
        assert torch.equal(packed['inputs'][0], whole['inputs'][t])
        for key in ('frame_id', 'img_id', 'ori_shape', 'instances',
                    'ori_video_length', 'video_length'):
            assert frame.get(key) == frames[t].get(key), key
