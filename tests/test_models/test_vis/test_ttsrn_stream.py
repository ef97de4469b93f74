"""TTSRN over videos streamed window by window, against the dense linker.

The reference is the whole-video path the model had before streaming: every
window predicted, joined at once by ``WindowLinker.merge`` and post-processed
over all frames in one go."""
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, TrackDataSample
from tiny_models import tiny_head_cfg

import mmttsrn  # noqa: F401
from mmttsrn.models.task_modules import LinkStream

H, W = 32, 48


def _model(overlap=2, **test_cfg):
    """A tiny random TTSRN with clips of 4 frames and 3 slots."""
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type='TTSRN',
            data_preprocessor=dict(
                type='TrackDataPreprocessor',
                mean=[100.] * 3,
                std=[50.] * 3,
                pad_size_divisor=32),
            backbone=dict(
                type='TwinsSVT',
                embed_dims=(8, 16, 32, 64),
                depths=(1, 1, 1, 1),
                num_heads=(1, 1, 2, 4)),
            track_head=tiny_head_cfg(
                num_classes=3,
                num_frames=4,
                num_queries=3,
                conv3d_channels=(4, 4)),
            test_cfg=dict(
                max_per_video=5,
                linker=dict(type='WindowLinker', overlap=overlap),
                **test_cfg))).eval()


def _frames(num_frames, seed=0):
    """Packed one-frame samples of a uint8 video: a bright square moving
    over noise."""
    rng = np.random.default_rng(seed)
    for t in range(num_frames):
        img = rng.integers(0, 80, (3, H, W), dtype=np.uint8)
        img[:, 8:20, t % 30:t % 30 + 12] = 230
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(H, W), ori_shape=(2 * H, 2 * W), frame_id=t))
        packed = TrackDataSample()
        packed.video_data_samples = [sample]
        yield dict(inputs=torch.from_numpy(img)[None], data_samples=packed)


def _dense(model, num_frames):
    """The whole video pre-processed at once: (1, L, C, H', W') and its
    TrackDataSample."""
    frames = list(_frames(num_frames))
    video = TrackDataSample()
    video.video_data_samples = [
        f['data_samples'].video_data_samples[0] for f in frames
    ]
    data = model.data_preprocessor(
        dict(
            inputs=[torch.cat([f['inputs'] for f in frames])],
            data_samples=[video]), False)
    return data['inputs'], data['data_samples'][0]


def _record_windows(model, monkeypatch):
    """Keep each window's head outputs as the linker receives them."""
    windows = []
    push = LinkStream.push

    def spy(stream, window, next_start=None):
        windows.append({k: v.clone() for k, v in window.items()})
        return push(stream, window, next_start)

    monkeypatch.setattr(LinkStream, 'push', spy)
    return windows


def _reference(model, windows, sample):
    """Per-frame instances as the model computed them before streaming:
    the same windows joined at once and post-processed over all frames."""
    num_frames = len(sample.video_data_samples)
    assert [w['frame_inds'].tolist() for w in windows] == [
        inds.tolist()
        for inds in model.linker.split(num_frames, model.num_frames)
    ]
    tracks = model.linker.merge(windows, num_frames)
    return model._post_process(tracks, sample, rescale=True)


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for t, (a, b) in enumerate(zip(got, expected)):
        assert torch.equal(a.instances_id, b.instances_id), t
        assert torch.equal(a.labels, b.labels), t
        assert torch.equal(a.masks, b.masks), t
        assert torch.equal(a.bboxes, b.bboxes), t
        torch.testing.assert_close(a.scores, b.scores)


@pytest.mark.parametrize('num_frames,overlap,test_cfg', [
    (3, 2, {}),
    (4, 2, {}),
    (13, 2, {}),
    (14, 1, dict(drop_absent_frames=True)),
    (11, 3, dict(multi_label=True)),
])
def test_streamed_predict_equals_the_dense_linker(num_frames, overlap,
                                                  test_cfg, monkeypatch):
    model = _model(overlap, **test_cfg)
    inputs, sample = _dense(model, num_frames)
    windows = _record_windows(model, monkeypatch)
    with torch.no_grad():
        result, = model.predict(inputs, [sample])
    expected = _reference(model, windows, sample)
    got = [f.pred_track_instances for f in result.video_data_samples]
    assert sum(len(f) for f in got) > 0
    _assert_same(got, expected)


def test_frames_read_lazily_give_the_same_tracks():
    model = _model()
    inputs, sample = _dense(model, 13)
    with torch.no_grad():
        expected, = model.predict(inputs, [sample])
        tracks = model.predict_frames(_frames(13))
    assert len(tracks) == len(tracks.frames) == 13
    assert [f.frame_id for f in tracks.frames] == list(range(13))
    _assert_same([tracks.instances(t) for t in range(13)], [
        f.pred_track_instances for f in expected.video_data_samples
    ])


def test_test_step_streams_iterables_of_frames_with_rle_masks():
    model = _model()

    class Video:
        """Re-readable frames, as the dataset's ``LazyVideoFrames``."""

        def __iter__(self):
            return _frames(6)

    with torch.no_grad():
        result, = model.test_step(dict(inputs=[Video()]))
        tracks = model.predict_frames(_frames(6))
    for t, frame in enumerate(result.video_data_samples):
        pred = frame.pred_track_instances
        assert isinstance(pred.masks, list)
        dense = tracks.instances(t).masks
        assert len(pred.masks) == len(dense)
        for rle, mask in zip(pred.masks, dense):
            assert np.array_equal(mask_util.decode(rle), mask.numpy())


def test_a_long_video_runs_in_bounded_memory(monkeypatch):
    """250 frames: the frames read ahead, the linker's kept frames and
    tracks, and the tracks' per-frame outputs stay bounded (the head's
    outputs are random here, to be quick)."""
    model = _model(overlap=1)
    num_frames, clip = 250, model.num_frames
    read = []
    kept = []

    def frames():
        for t, frame in enumerate(_frames(num_frames)):
            read.append(t)
            yield frame

    push = LinkStream.push

    def spy(stream, window, next_start=None):
        out = push(stream, window, next_start)
        kept.append((len(read) - 1 - int(window['frame_inds'][-1]),
                     *stream.sums['mask_probs'].shape[:2]))
        return out

    monkeypatch.setattr(LinkStream, 'push', spy)
    gen = torch.Generator().manual_seed(0)

    def predict_clip(inputs, pad_mask, inds):
        """Random outputs of the head's shapes: the model is not what is
        tested here, and random masks make new tracks in every window."""
        n, T = model.track_head.num_queries, clip
        return dict(
            cls_probs=torch.rand(n, T, 3, generator=gen),
            bboxes=torch.rand(n, T, 4, generator=gen),
            mask_probs=torch.rand(n, T, H // 4, W // 4, generator=gen))

    monkeypatch.setattr(model, '_predict_clip', predict_clip)
    with torch.no_grad():
        tracks = model.predict_frames(frames())
    assert len(tracks) == num_frames
    ahead, rows, held = np.array(kept).max(0)
    assert ahead <= clip - 1  # one step read ahead at most
    assert held <= clip  # frames kept by the linker
    assert rows <= 2 * model.track_head.num_queries
    # What is kept per frame is RLE and a box per track, no dense masks.
    assert all(
        isinstance(rle, (dict, type(None))) for out in tracks._outputs
        for rle, _ in out.values())


def test_reid_passes_the_decoder_output_to_the_linker(monkeypatch):
    model = _model()
    model.linker.reid_thr = 0.9
    windows = _record_windows(model, monkeypatch)
    with torch.no_grad():
        model.predict_frames(_frames(7))
    assert [w['embeds'].shape for w in windows] == [(3, 48)] * 3
    # The hook is gone afterwards.
    assert not model.track_head.cls_head._forward_pre_hooks
