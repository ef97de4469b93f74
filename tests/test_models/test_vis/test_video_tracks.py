"""VideoTracks keeping stride-4 probabilities against streaming RLE."""
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from mmdet.structures import DetDataSample

from mmttsrn.models.vis.video_tracks import VideoTracks

K = 3


def _frames(num_frames):
    # img_shape != padded shape != ori_shape: crop, then rescale.
    return [
        DetDataSample(
            metainfo=dict(
                img_shape=(28, 40),
                batch_input_shape=(32, 48),
                ori_shape=(57, 81))) for _ in range(num_frames)
    ]


def _chunks(gen):
    """Chunks as a LinkStream hands them back: tracks that start late,
    end early, skip frames, and a frame without any track."""
    specs = [([0, 1, 2], 2), ([1, 2, 3, 4], 3), ([], 1), ([4, 6], 2)]
    start = 0
    for ids, num in specs:
        m = len(ids)
        covered = torch.rand(m, num, generator=gen) > 0.2
        yield dict(
            frame_inds=torch.arange(start, start + num),
            track_ids=torch.tensor(ids, dtype=torch.long),
            cls_probs=torch.rand(m, num, K, generator=gen) / 1.5,
            bboxes=torch.rand(m, num, 4, generator=gen),
            mask_probs=torch.rand(m, num, 8, 12, generator=gen),
            covered=covered)
        start += num


@pytest.mark.parametrize('test_cfg', [
    dict(),
    dict(multi_label=True),
    dict(drop_absent_frames=True, score_thr=0.2),
])
@pytest.mark.parametrize('rescale', [True, False])
def test_masks_from_kept_probabilities_equal_the_streamed_rle(
        test_cfg, rescale):
    cfg = {**dict(mask_thr=0.5, score_thr=0.0, max_per_video=10), **test_cfg}
    frames = _frames(8)
    tracks = {
        stream: VideoTracks(K, cfg, frames, rescale, stream_rle=stream)
        for stream in (True, False)
    }
    for stream, video in tracks.items():
        for chunk in _chunks(torch.Generator().manual_seed(0)):
            video.add(chunk)
    streamed, kept = tracks[True], tracks[False]
    assert len(kept) == 8 and len(kept.kept['tracks']) > 3
    out = (57, 81) if rescale else (28, 40)
    for t in range(8):
        a, b = streamed.instances(t), kept.instances(t)
        assert b.masks.shape == (len(b), *out)
        assert torch.equal(a.masks, b.masks), t
        assert torch.equal(a.bboxes, b.bboxes), t
        for key in ('scores', 'labels', 'instances_id'):
            assert torch.equal(a[key], b[key]), (t, key)
        rles = kept.instances(t, encode=True).masks
        assert [mask_util.decode(r).tolist() for r in rles] == [
            m.numpy().astype(np.uint8).tolist() for m in a.masks
        ]
    # The frame without tracks: kept instances, all empty, zero boxes.
    empty = kept.instances(5)
    assert len(empty) and not empty.masks.any() and not empty.bboxes.any()


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA device')
def test_masks_stay_on_the_device_of_the_probabilities():
    cfg = dict(mask_thr=0.5, score_thr=0.0, max_per_video=10)
    video = VideoTracks(K, cfg, _frames(8), True, stream_rle=False)
    for chunk in _chunks(torch.Generator().manual_seed(0)):
        video.add({k: v.cuda() for k, v in chunk.items()})
    pred = video.instances(0)
    assert pred.masks.is_cuda and pred.bboxes.is_cuda and pred.scores.is_cuda


@pytest.mark.parametrize('stream_rle', [True, False])
def test_data_sample_attaches_instances_without_printing_them(
        stream_rle, monkeypatch):
    cfg = dict(mask_thr=0.5, score_thr=0.0, max_per_video=10)
    frames = _frames(8)
    video = VideoTracks(K, cfg, frames, True, stream_rle=stream_rle)
    for chunk in _chunks(torch.Generator().manual_seed(0)):
        video.add(chunk)
    expected = [video.instances(t) for t in range(8)]

    def no_printing(tensor, *args, **kwargs):
        # On a GPU each printed value waits for the device.
        raise AssertionError('a tensor was formatted')

    monkeypatch.setattr(torch.Tensor, '__repr__', no_printing)
    sample = video.data_sample()
    monkeypatch.undo()
    assert all(a is b for a, b in zip(sample.video_data_samples, frames))
    assert len(sample.video_data_samples) == len(frames)
    for frame, want in zip(sample.video_data_samples, expected):
        got = frame.pred_track_instances
        assert torch.equal(got.masks, want.masks)
        for key in ('bboxes', 'scores', 'labels', 'instances_id'):
            assert torch.equal(got[key], want[key]), key
    encoded = video.data_sample(encode=True).video_data_samples[0]
    assert isinstance(encoded.pred_track_instances.masks[0], dict)


@pytest.mark.parametrize('frames_per_call,sizes', [
    (100, [2, 3, 2]),  # the third chunk has no track: nothing to resize
    (2, [2, 2, 1, 2]),
    (1, [1] * 7),
    (0, [1] * 7),
])
def test_data_sample_upsamples_frames_together_as_memory_allows(
        frames_per_call, sizes, monkeypatch):
    """Without stream_rle, data_sample() up-samples the frames of a chunk
    together, as many as ``upsample_bytes`` allows (one at least), with the
    masks of one frame at a time."""
    cfg = dict(mask_thr=0.5, score_thr=0.0, max_per_video=10)
    video = VideoTracks(K, cfg, _frames(8), True, stream_rle=False)
    for chunk in _chunks(torch.Generator().manual_seed(1)):
        video.add(chunk)
    expected = [video.instances(t) for t in range(8)]
    per_frame = len(video.kept['tracks']) * 57 * 81 * 4
    monkeypatch.setattr(video, 'upsample_bytes', frames_per_call * per_frame)
    calls = []
    upsample = video._upsample
    monkeypatch.setattr(
        video, '_upsample',
        lambda probs, covered: calls.append(probs.shape[1]) or upsample(
            probs, covered))
    got = [f.pred_track_instances
           for f in video.data_sample().video_data_samples]
    assert calls == sizes
    for a, b in zip(got, expected):
        assert torch.equal(a.masks, b.masks)
        assert torch.equal(a.bboxes, b.bboxes)


@pytest.mark.parametrize('ori_shape', [(28, 40), (57, 81)])
def test_masks_at_the_input_size_are_resized_once(ori_shape, monkeypatch):
    """Frames whose original size is the network's input size get their
    masks from one resize (to the padded size, then cropped): a second,
    to the same size, would only copy them."""
    import torch.nn.functional as F

    from mmttsrn.models.vis import video_tracks
    cfg = dict(mask_thr=0.5, score_thr=0.0, max_per_video=10)
    frames = _frames(8)
    for frame in frames:
        frame.set_metainfo(dict(ori_shape=ori_shape))
    video = VideoTracks(K, cfg, frames, True, stream_rle=False)
    for chunk in _chunks(torch.Generator().manual_seed(2)):
        video.add(chunk)
    sizes = []
    interpolate = F.interpolate

    def counted(x, size, **kwargs):
        sizes.append(tuple(size))
        out = interpolate(x, size=size, **kwargs)
        if size == (32, 48):
            # What the skipped resize would have given: its input.
            crop = out[..., :28, :40]
            assert torch.equal(interpolate(crop, size=(28, 40), **kwargs),
                               crop)
        return out

    monkeypatch.setattr(video_tracks.F, 'interpolate', counted)
    got = [f.pred_track_instances
           for f in video.data_sample().video_data_samples]
    per_call = [(32, 48)] if ori_shape == (28, 40) else [(32, 48), (57, 81)]
    assert sizes and sizes == per_call * (len(sizes) // len(per_call))
    assert all(i.masks.shape[-2:] == ori_shape for i in got)
