"""A whole video through an exported ONNX clip, against the PyTorch model.

The tests that need the exported file (about 15-20 s to export) are marked
slow.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from mmttsrn.apis import (FramePassThrough, inference_video,
                          inference_video_onnx, init_model, init_onnx_model)
from mmttsrn.models.vis.onnx_export import (compare_with_pytorch, export_onnx,
                                            replace_bool_where)

CONFIG = str(
    Path(__file__).parents[2] / 'configs' / 'ttsrn' / 'ttsrn_synthetic.py')
CLASSES = ('circle', 'square', 'triangle', 'cross')
# The quickstart model with 2-frame clips and fewer transformer layers (the
# export time grows with the layers); 2 decoder layers keep masked attention.
TINY = {
    'num_frames': 2,
    'model.track_head.transformer.num_encoder_layers': 1,
    'model.track_head.transformer.num_decoder_layers': 2,
    'test_dataloader.dataset.metainfo': dict(classes=CLASSES),
}
# The synthetic test pipeline resizes every frame to 96 x 128.
SIZE = (96, 128)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """(PyTorch model, ONNX file) of a random tiny model."""
    torch.manual_seed(0)
    model = init_model(CONFIG, cfg_options=TINY)
    onnx_file = str(tmp_path_factory.mktemp('onnx') / 'tiny.onnx')
    info = export_onnx(model, onnx_file, SIZE)
    # The masked attention's bool masks (one per decoder layer after the
    # first) are the bool Where nodes onnxruntime cannot run.
    assert info['bool_where'] >= 1
    return model, onnx_file


def _frames(num, h=40, w=56, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(num)
    ]


@pytest.mark.slow
def test_clip_outputs_match_pytorch(exported):
    model, onnx_file = exported
    diffs = compare_with_pytorch(model, onnx_file, (90, 120), seed=1)
    assert set(diffs) == {'cls_scores', 'bbox_preds', 'mask_preds'}
    assert max(diffs.values()) < 1e-3, diffs


@pytest.mark.slow
@pytest.mark.parametrize('num_frames', [1, 5])
def test_video_results_match_pytorch(exported, num_frames):
    # 5 frames in 2-frame clips overlapping by one frame: 4 windows joined
    # by the linker; 1 frame: stretched to one clip.
    model, onnx_file = exported
    frames = _frames(num_frames)
    expected = inference_video(model, frames).video_data_samples
    result = inference_video_onnx(
        onnx_file, CONFIG, frames, cfg_options=TINY).video_data_samples
    assert len(result) == num_frames
    for want, got in zip(expected, result):
        want, got = want.pred_track_instances, got.pred_track_instances
        assert len(got) == len(want) > 0
        torch.testing.assert_close(got.scores, want.scores, atol=1e-4, rtol=0)
        assert torch.equal(got.labels, want.labels)
        assert torch.equal(got.instances_id, want.instances_id)
        assert got.masks.shape == want.masks.shape == (len(want), 40, 56)
        # Random weights put many mask probabilities near the threshold.
        assert (got.masks != want.masks).float().mean() < 1e-3
        torch.testing.assert_close(got.bboxes, want.bboxes, atol=0.1, rtol=0)


@pytest.mark.slow
def test_init_onnx_model_reads_class_names_from_the_file(exported):
    model, onnx_file = exported
    other = dict(TINY)
    other['test_dataloader.dataset.metainfo'] = dict(
        classes=('a', 'b', 'c', 'd'))
    onnx_model = init_onnx_model(CONFIG, onnx_file, cfg_options=other)
    assert onnx_model.dataset_meta['classes'] == CLASSES
    assert isinstance(onnx_model.backbone, FramePassThrough)
    assert onnx_model.track_head.input_size == list(SIZE)
    assert onnx_model.track_head.num_queries == model.track_head.num_queries


@pytest.mark.slow
def test_reidentification_is_reported_unused(exported):
    _, onnx_file = exported
    with pytest.warns(UserWarning, match='reid_thr is not used'):
        init_onnx_model(
            CONFIG,
            onnx_file,
            cfg_options=dict(TINY, **{'model.test_cfg.linker.reid_thr': 0.5}))


@pytest.mark.slow
def test_frames_of_another_size_are_refused(exported):
    _, onnx_file = exported
    head = init_onnx_model(CONFIG, onnx_file, cfg_options=TINY).track_head
    with pytest.raises(ValueError, match=r'padded to \[96, 128\].*--size'):
        head(
            (torch.zeros(2, 3, 64, 64), ),
            torch.zeros(1, 2, 64, 64, dtype=torch.bool))


@pytest.mark.slow
def test_init_onnx_model_errors(exported, tmp_path):
    _, onnx_file = exported
    missing = str(tmp_path / 'nope.onnx')
    with pytest.raises(FileNotFoundError, match='nope.onnx'):
        init_onnx_model(CONFIG, missing, cfg_options=TINY)
    with pytest.raises(ValueError, match='clips of 2 frames'):
        init_onnx_model(
            CONFIG, onnx_file, cfg_options=dict(TINY, num_frames=3))
    with pytest.raises(ValueError, match='predicts 4 classes'):
        init_onnx_model(
            CONFIG,
            onnx_file,
            cfg_options=dict(
                TINY, **{
                    'model.track_head.num_classes': 3,
                    'test_dataloader.dataset.metainfo':
                    dict(classes=CLASSES[:3])
                }))


def test_replace_bool_where_is_exact():
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    names = ('c', 'x', 'y')
    graph = helper.make_graph(
        [helper.make_node('Where', list(names), ['out'])], 'where', [
            helper.make_tensor_value_info(n, TensorProto.BOOL, [8])
            for n in names
        ], [helper.make_tensor_value_info('out', TensorProto.BOOL, [8])])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 19)])
    assert replace_bool_where(model) == 1
    onnx.checker.check_model(model)
    session = ort.InferenceSession(
        model.SerializeToString(), providers=['CPUExecutionProvider'])
    bits = np.array([[(i >> k) & 1 for i in range(8)] for k in range(3)],
                    dtype=bool)
    out, = session.run(None, dict(zip(names, bits)))
    np.testing.assert_array_equal(out, np.where(*bits))
