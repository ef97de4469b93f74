"""``test_cfg.cuda_graphs``: the checks of its value, the CPU path, when
graphs are dropped, and on a GPU the predictions of replayed graphs against
eager ones (GPU tests skip without CUDA)."""
import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from test_ttsrn import make_video, tiny_model_cfg

from mmttsrn.models.layers import CastParameters

cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA device')


def build(cuda_graphs, seed=0, **test_cfg):
    cfg = tiny_model_cfg(num_frames=3)
    cfg['test_cfg'].update(test_cfg, cuda_graphs=cuda_graphs)
    torch.manual_seed(seed)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


def instances(result):
    return [f.pred_track_instances for f in result.video_data_samples]


def assert_same_predictions(got, expected, mask_agreement=1.0):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.instances_id.tolist() == b.instances_id.tolist()
        assert a.labels.tolist() == b.labels.tolist()
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(a.bboxes, b.bboxes, rtol=1e-4, atol=1e-3)
        if mask_agreement == 1.0:
            assert torch.equal(a.masks, b.masks)
        else:
            assert (a.masks == b.masks).float().mean() >= mask_agreement


@pytest.mark.parametrize('bad', [-1, 1.5, True, '2', None])
def test_cuda_graphs_must_be_an_int_of_zero_or_more(bad):
    with pytest.raises(ValueError, match='cuda_graphs'):
        build(bad)


def test_no_cuda_graphs_by_default():
    model = build(0)
    assert model.test_cfg['cuda_graphs'] == 0 and model._graphs is None


@pytest.mark.parametrize('bad', [1, 'yes', None])
def test_cast_parameters_once_must_be_a_bool(bad):
    with pytest.raises(ValueError, match='cast_parameters_once'):
        build(1, cast_parameters_once=bad)


def test_graphs_cast_the_model_parameters_once_by_default():
    assert build(1)._graphs.module is not None
    assert build(1, cast_parameters_once=False)._graphs.module is None


@torch.no_grad()
def test_graphed_forward_on_cast_parameters_is_the_same():
    """The forward that ``cuda_graphs`` records, under CPU autocast: most of
    the tiny model's parameters are only cast, and running on their copies
    changes no output."""
    model = build(1)
    inputs = torch.randn(1, 3, 3, 64, 96)
    pad_mask = torch.zeros(1, 3, 64, 96, dtype=torch.bool)
    # No autocast cache, as in a graph capture (cached casts are not ops).
    autocast = torch.autocast(
        'cpu', dtype=torch.bfloat16, cache_enabled=False)
    with autocast:
        expected = model._graphed_clip(inputs, pad_mask)
        params = CastParameters.find(model, torch.bfloat16,
                                     model._graphed_clip, inputs, pad_mask)
        with params.swapped():
            got = model._graphed_clip(inputs, pad_mask)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(params) >= len(linears)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key


@torch.no_grad()
def test_on_the_cpu_the_option_changes_nothing():
    inputs, video = make_video(5)
    expected = instances(build(0).predict(inputs[None], [video])[0])
    model = build(2)
    got = instances(model.predict(inputs[None], [video])[0])
    assert_same_predictions(got, expected)
    assert len(model._graphs) == 0


def test_train_eval_and_moves_drop_the_graphs():
    model = build(2)
    for step in (model.train, model.eval, model.float,
                 lambda: model.to('cpu')):
        model._graphs._graphs['signature'] = object()
        step()
        assert len(model._graphs) == 0, step


@cuda
@torch.no_grad()
@pytest.mark.parametrize('num_frames', [5, 2])
@pytest.mark.parametrize('reid', [False, True])
def test_replayed_graphs_predict_as_eager_runs(num_frames, reid):
    """Windows of a 5-frame video (one graph), a 2-frame video that repeats
    a frame (the backbone sees its 2 distinct frames) and the linker's
    re-identification, whose embeddings are a graph output too."""
    eager, graphed = build(0).cuda(), build(4).cuda()
    if reid:
        for model in (eager, graphed):
            model.linker.reid_thr = 0.5
    inputs, video = make_video(num_frames)
    inputs = inputs[None].cuda()
    expected = instances(eager.predict(inputs, [video])[0])
    for _ in range(2):  # the capture, then a replay
        got = instances(graphed.predict(inputs, [video])[0])
        # The graph's deformable conv samples with grid_sample.
        assert_same_predictions(got, expected, mask_agreement=0.999)
    assert len(graphed._graphs) == 1


@cuda
@torch.no_grad()
def test_a_graph_reads_the_parameters_it_was_captured_with():
    """Weights loaded in place after a capture are used by its replays."""
    graphed = build(4).cuda()
    inputs, video = make_video(3)
    inputs = inputs[None].cuda()
    graphed.predict(inputs, [video])
    other = build(0, seed=1).cuda()
    graphed.load_state_dict(other.state_dict())
    assert len(graphed._graphs) == 1
    assert_same_predictions(
        instances(graphed.predict(inputs, [video])[0]),
        instances(other.predict(inputs, [video])[0]),
        mask_agreement=0.999)


@cuda
@torch.no_grad()
def test_graphs_on_cast_parameters_predict_as_graphs_without():
    """Under bf16 autocast, graphs recorded on parameters cast once give
    the predictions of graphs that cast them in every replay."""
    once = build(1).cuda()
    every = build(1, cast_parameters_once=False).cuda()
    inputs, video = make_video(3)
    inputs = inputs[None].cuda()
    with torch.autocast('cuda', dtype=torch.bfloat16):
        expected = instances(every.predict(inputs, [video])[0])
        for _ in range(2):  # the capture, then a replay
            got = instances(once.predict(inputs, [video])[0])
            assert_same_predictions(got, expected)
    (entry, ) = once._graphs._graphs.values()
    assert len(entry.params) > 0
    (entry, ) = every._graphs._graphs.values()
    assert entry.params is None


@cuda
@torch.no_grad()
def test_graphs_with_the_triton_deformable_conv_predict_as_without():
    """``mask_head.cuda_deform='triton'`` (the whole deformable conv as one
    kernel) in a graph gives the predictions of the three-op conv."""
    models = []
    for impl in ('grid_sample', 'triton'):
        cfg = tiny_model_cfg(num_frames=3)
        cfg['test_cfg'].update(cuda_graphs=1)
        cfg['track_head']['mask_head']['cuda_deform'] = impl
        torch.manual_seed(0)
        model = MODELS.build(cfg)
        model.init_weights()
        models.append(model.eval().cuda())
    inputs, video = make_video(3)
    inputs = inputs[None].cuda()
    expected = instances(models[0].predict(inputs, [video])[0])
    for _ in range(2):  # the capture, then a replay
        got = instances(models[1].predict(inputs, [video])[0])
        assert_same_predictions(got, expected, mask_agreement=0.999)
