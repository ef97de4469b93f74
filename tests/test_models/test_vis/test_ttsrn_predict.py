"""TTSRN.predict on videos whose right answer is known: a stub head that
segments bright pixels stands in for a trained one, so windows, linking,
cropping of padding and rescaling are checked exactly."""
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, TrackDataSample
from torch import nn

import mmttsrn  # noqa: F401
from mmttsrn.models.heads import TTSRNHead


class BrightPixelHead(nn.Module):
    """Slot ``call % 2`` segments the bright pixels of each frame (class 1);
    the other slot is empty, so instances change slot between windows."""

    num_classes = 3
    num_frames = 5
    # The real head turns raw outputs into probabilities.
    predict = TTSRNHead.predict
    predict_by_feat = TTSRNHead.predict_by_feat

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, feats, pad_mask):
        frames = feats[0]  # (T, 3, H, W): the stub backbone passes pixels
        T, _, H, W = frames.shape
        fg = F.avg_pool2d((frames.mean(1, keepdim=True) > 0.5).float(), 4)
        masks = torch.full((1, 2, T, H // 4, W // 4), -10.)
        slot = self.calls % 2
        masks[0, slot] = torch.where(fg[:, 0] > 0.5, 10., -10.)
        cls = torch.full((1, 1, 2, T, 4), -5.)
        cls[..., 1] = 5.
        self.calls += 1
        return dict(
            cls_scores=cls,
            bbox_preds=torch.full((1, 1, 2, T, 4), 0.5),
            mask_preds=masks)


def _model():
    model = MODELS.build(
        dict(
            type='TTSRN',
            backbone=dict(
                type='TwinsSVT',
                embed_dims=(8, 8, 8, 8),
                depths=(1, 1, 1, 1),
                num_heads=(1, 1, 1, 1)),
            track_head=dict(
                type='TTSRNHead',
                num_classes=3,
                num_frames=5,
                num_queries=2,
                in_channels=[8, 8, 8, 8],
                embed_dims=48,
                mask_head=dict(type='SequenceMaskHead', num_groups=1)),
            test_cfg=dict(
                max_per_video=5,
                linker=dict(type='WindowLinker', overlap=2))))
    model.track_head = BrightPixelHead()
    model.extract_feat = lambda inputs: (inputs.flatten(0, 1), )
    return model.eval()


def _video(num_frames, img_shape, pad_shape, ori_shape):
    """A bright 16x16 square moving right by 4 px per frame (network input
    coordinates), zeros in the padding."""
    h, w = img_shape
    inputs = torch.zeros(1, num_frames, 3, *pad_shape)
    frames = []
    for t in range(num_frames):
        inputs[0, t, :, 24:40, 4 * t:4 * t + 16] = 1.0
        frames.append(
            DetDataSample(
                metainfo=dict(
                    img_shape=img_shape,
                    batch_input_shape=pad_shape,
                    ori_shape=ori_shape,
                    frame_id=t)))
    video = TrackDataSample()
    video.video_data_samples = frames
    return inputs, video


def test_object_crossing_window_boundaries_is_one_track():
    # 12 frames in windows of 5 overlapping by 2: [0-4], [3-7], [6-10],
    # [7-11]; the object changes slot in every window.
    inputs, video = _video(12, (64, 96), (64, 96), (64, 96))
    model = _model()
    with torch.no_grad():
        result, = model.predict(inputs, [video])
    assert model.track_head.calls == 4
    for t, frame in enumerate(result.video_data_samples):
        pred = frame.pred_track_instances
        # One track (the empty slots are dropped), the same id everywhere.
        assert pred.instances_id.tolist() == [0], t
        assert pred.labels.tolist() == [1]
        expected = torch.zeros(64, 96, dtype=torch.bool)
        expected[24:40, 4 * t:4 * t + 16] = True
        # Bilinear up-sampling from stride 4 rounds off the corners only.
        mask = pred.masks[0]
        assert (mask & expected).sum() / (mask | expected).sum() > 0.95, t


def test_masks_crop_padding_then_rescale_to_the_original_frame():
    # Frames resized to 60x90 for the network, padded to 64x96; the
    # original frames are 120x180.
    inputs, video = _video(3, (60, 90), (64, 96), (120, 180))
    with torch.no_grad():
        result, = _model().predict(inputs, [video], rescale=True)
    for t, frame in enumerate(result.video_data_samples):
        mask = frame.pred_track_instances.masks[0]
        assert mask.shape == (120, 180)
        expected = torch.zeros(120, 180, dtype=torch.bool)
        expected[48:80, 8 * t:8 * t + 32] = True
        inter = (mask & expected).sum()
        union = (mask | expected).sum()
        assert inter / union > 0.9, t


def _tracks(cls_probs, mask_probs=None, covered=None):
    """Linked tracks as ``WindowLinker.merge`` gives them: ``cls_probs``
    (N, L, K); masks everywhere and every frame covered unless given."""
    N, L = cls_probs.shape[:2]
    return dict(
        cls_probs=cls_probs,
        bboxes=torch.full((N, L, 4), 0.5),
        mask_probs=torch.ones(N, L, 16, 24)
        if mask_probs is None else mask_probs,
        covered=torch.ones(N, L, dtype=torch.bool)
        if covered is None else covered)


def test_category_is_the_majority_over_covered_frames():
    model = _model()
    _, video = _video(4, (64, 96), (64, 96), (64, 96))
    # Frame 0: class 0 at 0.9; frames 1-2: class 2 at 0.6; frame 3 is not
    # covered by the track and must not vote (class 0 at 1.0 there).
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.2, 0.6],
                          [0.3, 0.1, 0.6], [1.0, 0.0, 0.0]])
    tracks = _tracks(
        probs[None], covered=torch.tensor([[True, True, True, False]]))
    instances = model._post_process(tracks, video, rescale=True)
    assert instances[0].labels.tolist() == [2]
    torch.testing.assert_close(instances[0].scores, torch.tensor([0.7]))
    assert not instances[3].masks.any()
    assert instances[1].masks.all()


def test_tracks_with_empty_masks_are_dropped_before_top_k():
    model = _model()
    model.test_cfg.update(max_per_video=1)
    _, video = _video(2, (64, 96), (64, 96), (64, 96))
    mask_probs = torch.zeros(2, 2, 16, 24)
    mask_probs[1, :, 4:8, 4:8] = 0.9
    # Track 0 scores higher but has no mask anywhere.
    tracks = _tracks(
        torch.tensor([[[0.9, 0.0, 0.0]] * 2, [[0.0, 0.7, 0.0]] * 2]),
        mask_probs)
    instances = model._post_process(tracks, video, rescale=True)
    assert instances[0].instances_id.tolist() == [1]


def test_multi_label_reports_each_track_under_its_best_categories():
    model = _model()
    model.test_cfg.update(multi_label=True, max_per_video=3)
    _, video = _video(2, (64, 96), (64, 96), (64, 96))
    mask_probs = torch.zeros(2, 2, 16, 24)
    mask_probs[:, :, 4:8, 4:8] = 0.9
    # Track 0 is class 0 or 2 (0.5 / 0.4); track 1 is class 1 (0.8).
    tracks = _tracks(
        torch.tensor([[[0.5, 0.1, 0.4]] * 2, [[0.1, 0.8, 0.1]] * 2]),
        mask_probs)
    instances = model._post_process(tracks, video, rescale=True)
    pred = instances[0]
    assert pred.labels.tolist() == [1, 0, 2]
    torch.testing.assert_close(pred.scores, torch.tensor([0.8, 0.5, 0.4]))
    # Each (track, category) pair is its own instance; pairs of one track
    # share its mask.
    assert len(set(pred.instances_id.tolist())) == 3
    assert torch.equal(pred.masks[1], pred.masks[2])
    assert pred.masks[0].any()


def test_drop_absent_frames_leaves_no_object_frames_empty():
    model = _model()
    _, video = _video(3, (64, 96), (64, 96), (64, 96))
    # The slot holds an object of class 0 in frames 0 and 2; frame 1 says
    # no-object (class probabilities sum to 0.3).
    probs = torch.tensor([[[0.9, 0.05, 0.05], [0.1, 0.1, 0.1],
                           [0.7, 0.1, 0.1]]])
    tracks = _tracks(probs)
    painted = model._post_process(tracks, video, rescale=True)
    assert all(frame.masks.all() for frame in painted)
    model.test_cfg.update(drop_absent_frames=True)
    instances = model._post_process(tracks, video, rescale=True)
    assert [bool(frame.masks.any()) for frame in instances] == [
        True, False, True
    ]
    torch.testing.assert_close(instances[0].scores, torch.tensor([0.8]))
