"""Windows over long videos and the joining of their instances."""
import pytest
import torch

from mmttsrn.models.task_modules import WindowLinker


def test_split_short_video_repeats_frames_in_order():
    (inds, ) = WindowLinker().split(3, 7)
    assert inds.tolist() == [0, 0, 0, 1, 1, 2, 2]


def test_split_long_video_covers_every_frame_with_overlap():
    windows = WindowLinker(overlap=2).split(12, 5)
    assert [w.tolist()[0] for w in windows] == [0, 3, 6, 7]
    assert all(len(w) == 5 for w in windows)
    covered = torch.cat(windows).unique()
    assert covered.tolist() == list(range(12))


def test_split_rejects_bad_overlap_and_empty_video():
    with pytest.raises(ValueError, match='overlap'):
        WindowLinker(overlap=5).split(12, 5)
    with pytest.raises(ValueError, match='empty'):
        WindowLinker().split(0, 5)


def _window(start, order, video_len=8, clip=5, K=2):
    """Two square objects (A on the left, B on the right) in slot ``order``.
    """
    frame_inds = torch.arange(start, start + clip)
    masks = torch.zeros(2, clip, 8, 8)
    masks[order[0], :, :4, :4] = 1  # object A
    masks[order[1], :, 4:, 4:] = 1  # object B
    probs = torch.zeros(2, clip, K)
    probs[order[0], :, 0] = 0.9
    probs[order[1], :, 1] = 0.8
    return dict(
        frame_inds=frame_inds, cls_probs=probs,
        bboxes=torch.rand(2, clip, 4), mask_probs=masks)


def test_merge_keeps_ids_when_slots_swap_between_windows():
    linker = WindowLinker(overlap=2)
    tracks = linker.merge([_window(0, (0, 1)), _window(3, (1, 0))], 8)
    assert tracks['covered'].shape == (2, 8)
    assert tracks['covered'].all()
    # track 0 is object A in every frame, track 1 is object B
    assert (tracks['mask_probs'][0, :, :4, :4] == 1).all()
    assert (tracks['mask_probs'][1, :, 4:, 4:] == 1).all()
    assert (tracks['mask_probs'][0, :, 4:, 4:] == 0).all()
    assert torch.allclose(tracks['cls_probs'][0, :, 0], torch.tensor(0.9))


def test_merge_starts_new_tracks_for_unmatched_instances():
    linker = WindowLinker(overlap=2)
    second = _window(3, (0, 1))
    second['mask_probs'][1] = 0  # object B vanished; slot 1 is empty
    second['mask_probs'][1, :, 6:, :2] = 1  # a new object elsewhere
    tracks = linker.merge([_window(0, (0, 1)), second], 8)
    assert len(tracks['covered']) == 3
    assert tracks['covered'][1].tolist() == [True] * 5 + [False] * 3
    assert tracks['covered'][2].tolist() == [False] * 3 + [True] * 5
