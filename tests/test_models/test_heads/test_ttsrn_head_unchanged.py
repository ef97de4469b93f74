"""TTSRNHead's state dict and its seeded outputs stay what they were before
its constructor was split into builders (figures taken at commit
0f58502)."""
import hashlib

import pytest
import torch
from mmdet.registry import MODELS
from tiny_models import tiny_head_cfg

import mmttsrn  # noqa: F401

ALL_OPTIONS = dict(
    query_content=True,
    mask_pooling=True,
    masked_attention=True,
    mask_shape_encoder=dict(type='MaskShapeEncoder'),
    mask_upsample=dict(type='ConvexUpsample'),
    input_proj_norm=dict(type='GN', num_groups=8),
    pixel_embed=True)
# options: (number of state dict keys, md5 of the keys in order, sum of the
# weights, outputs weighted by linspace(-1, 1), sum of squared outputs).
SEED0 = {
    'paper': (99, 'b17defb1efc74095c2cf5aaf53ae10de', 504.0691161648602,
              -35.28503507482709, 165.75481425429697),
    'all': (126, 'cac989bd9b54fde0f9e3f3bda45c93d4', 646.3046935958893,
            292.2809569997658, 1978.7307443621528),
}


def _checksums(options):
    torch.manual_seed(0)
    head = MODELS.build(
        tiny_head_cfg(num_frames=2, num_queries=3,
                      **(ALL_OPTIONS if options == 'all' else {})))
    head.init_weights()
    head.eval()
    gen = torch.Generator().manual_seed(1)
    feats = [
        torch.randn(2, c, 32 // s, 32 // s, generator=gen)
        for c, s in zip([8, 16, 32, 64], [4, 8, 16, 32])
    ]
    pad_mask = torch.zeros(1, 2, 32, 32, dtype=torch.bool)
    pad_mask[..., 28:] = True
    with torch.no_grad():
        outs = head(feats, pad_mask)
    out = torch.cat([v.flatten() for _, v in sorted(outs.items())]).double()
    weights = torch.linspace(-1, 1, out.numel(), dtype=torch.float64)
    state = head.state_dict()
    return (len(state), hashlib.md5('\n'.join(state).encode()).hexdigest(),
            sum(v.double().sum().item() for v in state.values()),
            (out * weights).sum().item(), out.pow(2).sum().item())


@pytest.mark.parametrize('options', ['paper', 'all'])
def test_state_dict_and_seeded_outputs_are_unchanged(options):
    num, keys, weights, weighted, squared = _checksums(options)
    want = SEED0[options]
    assert (num, keys) == want[:2]
    assert (weights, weighted, squared) == pytest.approx(want[2:], rel=1e-6)
