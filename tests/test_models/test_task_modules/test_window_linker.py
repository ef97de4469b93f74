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


@pytest.mark.parametrize('clip,overlap', [(5, 2), (4, 1), (4, 0), (6, 5)])
def test_windows_read_lazily_are_the_split_windows(clip, overlap):
    linker = WindowLinker(overlap=overlap)
    for video_len in range(1, 30):
        expected = linker.split(video_len, clip)
        frames = iter(range(video_len))
        got = list(linker.windows(frames, clip))
        assert [w[0].tolist() for w in got] == [e.tolist() for e in expected]
        # The frames handed out are those at the indices.
        assert all(w[1] == w[0].tolist() for w in got)
        # Each window says where the next one starts.
        starts = [int(e[0]) for e in expected[1:]] + [None]
        assert [w[2] for w in got] == starts


def test_windows_hold_a_bounded_number_of_frames():
    read = []

    def frames():
        for i in range(1000):
            read.append(i)
            yield i

    for inds, _, _ in WindowLinker(overlap=1).windows(frames(), 4):
        # Never more than one step read ahead of the window.
        assert len(read) <= int(inds[-1]) + 1 + 3


def test_windows_errors():
    with pytest.raises(ValueError, match='empty'):
        list(WindowLinker().windows([], 5))
    with pytest.raises(ValueError, match='overlap'):
        list(WindowLinker(overlap=5).windows(range(12), 5))


def _random_windows(video_len, clip, overlap, n=3, seed=0):
    """Windows of moving random blobs in shuffled slots, with noise, so
    that linking has IoUs of every size to resolve."""
    gen = torch.Generator().manual_seed(seed)
    num_objects = 4
    ys, xs = torch.meshgrid(
        torch.arange(12.), torch.arange(16.), indexing='ij')
    centres = torch.rand(num_objects, 2, generator=gen) * 12
    speed = torch.randn(num_objects, 2, generator=gen) * 0.3
    windows = []
    for inds in WindowLinker(overlap=overlap).split(video_len, clip):
        objs = torch.randperm(num_objects, generator=gen)[:n]
        t = inds[None, :, None].float()
        c = centres[objs][:, None] + speed[objs][:, None] * t
        d2 = (ys - c[..., 0, None, None])**2 + (xs - c[..., 1, None, None])**2
        masks = (d2 < 9).float() * 0.8 + torch.rand(
            n, clip, 12, 16, generator=gen) * 0.3
        windows.append(
            dict(
                frame_inds=inds,
                cls_probs=torch.rand(n, clip, 3, generator=gen),
                bboxes=torch.rand(n, clip, 4, generator=gen),
                mask_probs=masks))
    return windows


def _stream_all(linker, windows, video_len):
    """Push every window; the handed-back frames as dense ``merge``
    output, and the largest kept (tracks, frames)."""
    stream = linker.stream()
    chunks, largest = [], (0, 0)
    for i, win in enumerate(windows):
        nxt = int(windows[i + 1]['frame_inds'].min()) \
            if i + 1 < len(windows) else None
        chunks.append(stream.push(win, nxt))
        kept = stream.sums['mask_probs'].shape[:2]
        largest = tuple(max(a, b) for a, b in zip(largest, kept))
    frames = torch.cat([c['frame_inds'] for c in chunks])
    assert frames.tolist() == list(range(video_len))
    dense = {
        key: value.new_zeros(stream.num_tracks, video_len, *value.shape[2:])
        for key, value in chunks[-1].items()
        if key not in ('frame_inds', 'track_ids')
    }
    for c in chunks:
        for key, value in dense.items():
            value[c['track_ids'][:, None], c['frame_inds'][None]] = c[key]
    return dense, largest


@pytest.mark.parametrize('video_len,clip,overlap', [(3, 5, 2), (5, 5, 2),
                                                    (12, 5, 2), (23, 4, 1),
                                                    (30, 6, 3), (9, 4, 0)])
def test_stream_gives_exactly_the_merged_tracks(video_len, clip, overlap):
    linker = WindowLinker(overlap=overlap)
    for seed in range(3):
        windows = _random_windows(video_len, clip, overlap, seed=seed)
        merged = linker.merge(windows, video_len)
        streamed, _ = _stream_all(linker, windows, video_len)
        assert merged.keys() == streamed.keys()
        for key in merged:
            assert torch.equal(merged[key], streamed[key]), (key, seed)


def test_stream_keeps_a_bounded_number_of_tracks_and_frames():
    clip, overlap, n = 5, 2, 3
    linker = WindowLinker(overlap=overlap)
    windows = _random_windows(400, clip, overlap, n=n)
    _, (rows, frames) = _stream_all(linker, windows, 400)
    # The tracks and frames of the last two windows at most.
    assert frames <= clip
    assert rows <= 2 * n


def _reid_windows(embeds_b):
    """Object A in frames 0-2 and 6-9, absent in the overlap frames 3-4;
    window 2's A comes with embedding ``embeds_b``."""
    first = _window(0, (0, 1), clip=5)
    first['mask_probs'][0, 3:] = 0  # A leaves after frame 2
    second = _window(3, (0, 1), clip=5)
    second['frame_inds'] = torch.arange(3, 8)
    second['mask_probs'][0, :2] = 0  # A is back from frame 5
    first['embeds'] = torch.tensor([[1., 0., 0.], [0., 1., 0.]])
    second['embeds'] = torch.stack([embeds_b, torch.tensor([0., 1., 0.])])
    return [first, second]


@pytest.mark.parametrize('reid_thr,embed,same', [
    (None, [1., 0.1, 0.], False),
    (0.8, [1., 0.1, 0.], True),
    (0.8, [0., 0., 1.], False),
])
def test_stream_reidentifies_a_track_absent_in_the_overlap(
        reid_thr, embed, same):
    linker = WindowLinker(overlap=2, reid_thr=reid_thr)
    dense, _ = _stream_all(linker, _reid_windows(torch.tensor(embed)), 8)
    # B (track 1) is continued by mask IoU in every case.
    assert dense['covered'][1].all()
    a_later = dense['mask_probs'][:, 5, 0, 0] > 0
    assert a_later.nonzero()[:, 0].tolist() == ([0] if same else [2])
