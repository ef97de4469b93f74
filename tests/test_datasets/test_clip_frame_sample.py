"""ClipFrameSample picks T ordered frames in BaseFrameSample's format."""
import random

import pytest

from mmttsrn.datasets.transforms import ClipFrameSample


def _video(length, video_id=3):
    return dict(
        video_id=video_id,
        video_length=length,
        images=[
            dict(
                img_id=100 + t,
                frame_id=t,
                img_path=f'{t}.jpg',
                instances=[dict(instance_id=1, bbox_label=0)])
            for t in range(length)
        ])


def test_consecutive_frames_and_format():
    random.seed(0)
    out = ClipFrameSample(num_frames=4)(_video(10))
    ids = out['frame_id']
    assert len(ids) == 4
    assert ids == list(range(ids[0], ids[0] + 4))
    assert out['img_id'] == [100 + t for t in ids]
    assert out['video_id'] == [3] * 4
    assert out['video_length'] == [4] * 4
    assert out['ori_video_length'] == [10] * 4
    assert all(isinstance(v, list) and len(v) == 4 for v in out.values())


def test_random_start_covers_all_valid_starts():
    random.seed(0)
    sampler = ClipFrameSample(num_frames=3, stride=2)
    starts = set()
    for _ in range(200):
        ids = sampler(_video(9))['frame_id']
        assert ids == [ids[0], ids[0] + 2, ids[0] + 4]
        starts.add(ids[0])
    assert starts == set(range(5))


def test_key_frame_sets_the_start():
    sampler = ClipFrameSample(num_frames=3)
    video = _video(8)
    video['key_frame_id'] = 2
    assert sampler(video)['frame_id'] == [2, 3, 4]
    video = _video(8)
    video['key_frame_id'] = 7  # moved back so the clip fits
    assert sampler(video)['frame_id'] == [5, 6, 7]


def test_stride_shrinks_to_fit():
    assert ClipFrameSample(
        4, stride=3).sampling_frames(
            7, start=0) == [0, 2, 4, 6]
    assert ClipFrameSample(4, stride=3).sampling_frames(4) == [0, 1, 2, 3]


@pytest.mark.parametrize('length,expected', [
    (3, [0, 0, 0, 1, 1, 2, 2]),
    (1, [0] * 7),
    (6, [0, 0, 1, 2, 3, 4, 5]),
])
def test_short_video_is_padded_in_time_order(length, expected):
    out = ClipFrameSample(num_frames=7, stride=2)(_video(length))
    assert out['frame_id'] == expected
    assert out['video_length'] == [7] * 7
    assert out['ori_video_length'] == [length] * 7
    # Repeated frames are independent copies: later transforms edit them.
    out['instances'][0].append('edited')
    assert len(out['instances'][1]) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match='num_frames'):
        ClipFrameSample(num_frames=0)
    with pytest.raises(ValueError, match='stride'):
        ClipFrameSample(num_frames=2, stride=0)
    with pytest.raises(ValueError, match='without frames'):
        ClipFrameSample(num_frames=2)(_video(0))
