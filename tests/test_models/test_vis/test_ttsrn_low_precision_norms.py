"""``test_cfg.low_precision_norms``: its value, the norms it replaces, no
change on the CPU, and on a GPU bf16 outputs close to autocast's float32
norms (GPU tests skip without CUDA)."""
import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from test_ttsrn import make_video, tiny_model_cfg

from mmttsrn.models.layers import LowPrecisionGroupNorm, LowPrecisionLayerNorm

cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA device')


def build(*low_precision_norms):
    """The tiny model; with the option set when given."""
    cfg = tiny_model_cfg(num_frames=3)
    if low_precision_norms:
        cfg['test_cfg']['low_precision_norms'], = low_precision_norms
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.eval()


def norm_types(model):
    norms = (nn.LayerNorm, nn.GroupNorm)
    return {type(m) for m in model.modules() if isinstance(m, norms)}


@pytest.mark.parametrize('bad', [1, 'yes', None])
def test_low_precision_norms_must_be_a_bool(bad):
    with pytest.raises(ValueError, match='low_precision_norms'):
        build(bad)


def test_every_norm_is_replaced_by_default_and_the_weights_load_across():
    model, plain = build(), build(False)
    assert norm_types(model) == {LowPrecisionLayerNorm, LowPrecisionGroupNorm}
    assert norm_types(plain) == {nn.LayerNorm, nn.GroupNorm}
    model.load_state_dict(plain.state_dict())
    plain.load_state_dict(model.state_dict())


@torch.no_grad()
@pytest.mark.parametrize('autocast', [False, True])
def test_on_the_cpu_the_option_changes_nothing(autocast):
    inputs, video = make_video(3)
    results = []
    for option in (True, False):
        with torch.autocast('cpu', torch.bfloat16, enabled=autocast):
            result = build(option).predict(inputs[None], [video])[0]
        results.append(
            [f.pred_track_instances for f in result.video_data_samples])
    for a, b in zip(*results):
        assert a.labels.tolist() == b.labels.tolist()
        assert torch.equal(a.scores, b.scores)
        assert torch.equal(a.masks, b.masks)


@cuda
@torch.no_grad()
def test_gpu_bf16_outputs_are_close_to_float32_norms():
    inputs, video = make_video(3)
    inputs = inputs[None].cuda()
    pad_mask = torch.zeros(
        1, 3, *inputs.shape[-2:], dtype=torch.bool, device='cuda')
    outs = []
    for option in (True, False):
        model = build(option).cuda()
        with torch.autocast('cuda', torch.bfloat16):
            outs.append(
                model.track_head(model.extract_feat(inputs), pad_mask))
    for key in ('cls_scores', 'mask_preds'):
        got, expected = outs[0][key].float(), outs[1][key].float()
        scale = expected.abs().amax()
        assert (got - expected).abs().amax() <= 0.05 * scale, key
