"""init_model and inference_video on the synthetic config (random weights)."""
from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch
from mmengine.runner import save_checkpoint

from mmttsrn.apis import (build_inference_pipeline, inference_video,
                          init_model, track_video)

CONFIG = str(
    Path(__file__).parents[2] / 'configs' / 'ttsrn' / 'ttsrn_synthetic.py')


def _frames(num, h=40, w=56, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(num)
    ]


@pytest.fixture(scope='module')
def model(synthetic_root):
    with pytest.warns(UserWarning, match='random weights'):
        return init_model(
            CONFIG,
            cfg_options={
                'test_dataloader.dataset.data_root': str(synthetic_root)
            })


def test_init_model_reads_classes_from_the_test_annotations(model):
    assert model.dataset_meta['classes'] == ('circle', 'square', 'triangle',
                                             'cross')
    assert not model.training
    assert model.cfg.model.type == 'TTSRN'


def test_init_model_falls_back_to_generic_class_names(tmp_path):
    with pytest.warns(UserWarning, match='class names'):
        model = init_model(
            CONFIG,
            cfg_options={'test_dataloader.dataset.data_root': str(tmp_path)})
    assert model.dataset_meta['classes'] == tuple(f'class_{i}'
                                                  for i in range(4))


def test_init_model_loads_checkpoint_weights_and_classes(model, tmp_path):
    state = {
        k: torch.randn_like(v) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }
    path = str(tmp_path / 'ckpt.pth')
    save_checkpoint(
        dict(
            state_dict=state,
            meta=dict(dataset_meta=dict(classes=('a', 'b', 'c', 'd')))), path)
    loaded = init_model(
        CONFIG,
        path,
        cfg_options={'test_dataloader.dataset.data_root': str(tmp_path)})
    assert loaded.dataset_meta['classes'] == ('a', 'b', 'c', 'd')
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_init_model_errors(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        init_model(CONFIG, missing)
    with pytest.raises(FileNotFoundError, match='missing.py'):
        init_model(str(tmp_path / 'missing.py'))


def _type_names(transform):
    """Class names of a transform and of the transforms it wraps."""
    names = [type(transform).__name__]
    for child in getattr(transform, 'transforms', []):
        names += _type_names(child)
    return names


def test_pipeline_takes_frames_in_memory(model):
    names = _type_names(build_inference_pipeline(model.cfg))
    assert 'LoadImageFromNDArray' in names
    assert 'LoadVideoFrame' not in names
    assert 'LoadTrackAnnotations' not in names
    assert 'Resize' in names


@pytest.mark.parametrize('num_frames', [3, 6])
def test_inference_video_returns_every_frame_at_original_size(
        model, num_frames):
    # The synthetic model's clips have 4 frames: 3 is padded, 6 is windowed.
    result = inference_video(model, _frames(num_frames))
    assert len(result) == num_frames
    ids = None
    for t, frame in enumerate(result.video_data_samples):
        assert frame.ori_shape == (40, 56)
        assert frame.frame_id == t
        pred = frame.pred_track_instances
        k = len(pred)
        assert pred.masks.shape == (k, 40, 56)
        assert pred.masks.dtype == torch.bool
        assert pred.bboxes.shape == (k, 4)
        assert ((pred.labels >= 0) & (pred.labels < 4)).all()
        if ids is None:
            ids = pred.instances_id.tolist()
        # A track keeps its id in every frame.
        assert pred.instances_id.tolist() == ids


def test_inference_video_reads_paths(model, tmp_path):
    frames = _frames(2, seed=1)
    paths = []
    for i, frame in enumerate(frames):
        paths.append(str(tmp_path / f'{i}.png'))
        mmcv.imwrite(frame, paths[-1])
    from_paths = inference_video(model, paths)
    from_arrays = inference_video(model, frames)
    for a, b in zip(from_paths.video_data_samples,
                    from_arrays.video_data_samples):
        assert torch.equal(a.pred_track_instances.masks,
                           b.pred_track_instances.masks)


def test_inference_video_errors(model, tmp_path):
    with pytest.raises(ValueError, match='at least one frame'):
        inference_video(model, [])
    with pytest.raises(ValueError, match='same size'):
        inference_video(model, _frames(1) + _frames(1, h=32))
    with pytest.raises(FileNotFoundError, match='frame 0 .*missing.jpg'):
        inference_video(model, [str(tmp_path / 'missing.jpg')])
    (tmp_path / 'bad.jpg').write_text('not an image')
    with pytest.raises(ValueError, match='cannot read frame 0'):
        inference_video(model, [str(tmp_path / 'bad.jpg')])
    with pytest.raises(ValueError, match=r'\(H, W, 3\)'):
        inference_video(model, [np.zeros((8, 8), np.uint8)])


def test_track_video_reads_a_folder_lazily_as_inference_video(
        model, tmp_path, capsys):
    frames = _frames(7, seed=2)
    for i, frame in enumerate(frames):
        mmcv.imwrite(frame, str(tmp_path / f'{i:03d}.png'))
    tracks = track_video(model, str(tmp_path), progress=True)
    # The progress bar counts the frames, with a rate.
    assert "7/7" in capsys.readouterr().out
    dense = inference_video(model, frames)
    assert len(tracks) == len(dense) == 7
    for t, frame in enumerate(dense.video_data_samples):
        got = tracks.instances(t)
        assert tracks.frames[t].frame_id == t
        assert torch.equal(got.masks, frame.pred_track_instances.masks)
        assert torch.equal(got.instances_id,
                           frame.pred_track_instances.instances_id)
