import pytest
import torch
from timm.models.twins import Twins

from mmttsrn.models.backbones import TwinsSVT, convert_twins_state_dict

TINY = dict(
    embed_dims=(16, 32, 64, 128),
    num_heads=(1, 2, 4, 8),
    depths=(1, 1, 2, 1),
    window_sizes=(3, 3, 3, 3))


@pytest.mark.parametrize('size', [(64, 96), (40, 72), (50, 66)])
def test_twins_output_strides_and_channels(size):
    torch.manual_seed(0)
    model = TwinsSVT(**TINY).eval()
    h, w = size
    with torch.no_grad():
        outs = model(torch.randn(2, 3, h, w))
    assert len(outs) == 4
    for i, out in enumerate(outs):
        stride = 4 * 2**i
        assert out.shape == (2, TINY['embed_dims'][i], h // stride,
                             w // stride)
        assert torch.isfinite(out).all()


def test_twins_out_indices_builds_only_needed_stages():
    model = TwinsSVT(**TINY, out_indices=(1, 2))
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 64]
    assert [o.shape[-1] for o in outs] == [8, 4]
    assert len(model.blocks) == 3
    assert not any(k.startswith('blocks.3') for k in model.state_dict())


def test_twins_state_dict_uses_timm_names():
    keys = set(TwinsSVT(**TINY).state_dict())
    for key in ('patch_embeds.0.proj.weight', 'patch_embeds.3.norm.bias',
                'blocks.2.0.attn.qkv.weight', 'blocks.2.1.attn.q.weight',
                'blocks.2.1.attn.kv.weight', 'blocks.0.0.mlp.fc1.weight',
                'pos_block.0.proj.0.weight'):
        assert key in keys, key
    assert not any(k.startswith(('norm.', 'head.')) for k in keys)


def test_twins_frozen_stages():
    model = TwinsSVT(**TINY, frozen_stages=1)
    model.train()
    for i in range(4):
        frozen = i <= 1
        for module in (model.patch_embeds[i], model.blocks[i],
                       model.pos_block[i]):
            assert all(p.requires_grad != frozen for p in module.parameters())
            assert all(m.training != frozen for m in module.modules())
    outs = model(torch.randn(1, 3, 64, 64))
    sum(o.sum() for o in outs).backward()
    assert model.patch_embeds[0].proj.weight.grad is None
    assert model.patch_embeds[2].proj.weight.grad is not None


def test_twins_bad_arguments():
    with pytest.raises(ValueError, match='same length'):
        TwinsSVT(embed_dims=(16, 32))
    with pytest.raises(ValueError, match='out_indices'):
        TwinsSVT(**TINY, out_indices=(4, ))


def test_twins_loads_wrapped_checkpoint(tmp_path):
    torch.manual_seed(1)
    source = TwinsSVT(**TINY)
    state = {f'module.{k}': v for k, v in source.state_dict().items()}
    state['module.head.weight'] = torch.randn(10, 128)
    state['module.head.bias'] = torch.randn(10)
    state['module.norm.weight'] = torch.randn(128)
    path = tmp_path / 'twins.pth'
    torch.save({'model': state}, path)

    torch.manual_seed(2)
    target = TwinsSVT(
        **TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    assert not torch.equal(target.patch_embeds[0].proj.weight,
                           source.patch_embeds[0].proj.weight)
    target.init_weights()
    expected = source.state_dict()
    loaded = target.state_dict()
    assert expected.keys() == loaded.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(source.eval()(x), target.eval()(x)):
        assert torch.equal(a, b)


def test_twins_missing_checkpoint_raises(tmp_path):
    path = str(tmp_path / 'missing.pth')
    model = TwinsSVT(**TINY, init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        model.init_weights()


def test_convert_twins_state_dict():
    weight = torch.ones(1)
    converted = convert_twins_state_dict({
        'state_dict': {
            'backbone.blocks.0.0.norm1.weight': weight,
            'module.backbone.pos_block.0.proj.0.bias': weight,
            'backbone.norm.weight': weight,
            'backbone.head.weight': weight,
        }
    })
    assert converted == {
        'blocks.0.0.norm1.weight': weight,
        'pos_block.0.proj.0.bias': weight
    }


def test_twins_matches_timm_with_converted_weights():
    torch.manual_seed(3)
    reference = Twins(
        img_size=32,
        num_classes=5,
        embed_dims=TINY['embed_dims'],
        num_heads=TINY['num_heads'],
        depths=TINY['depths'],
        wss=TINY['window_sizes']).eval()
    model = TwinsSVT(**TINY).eval()
    # Strict: timm's keys minus classifier and final norm are exactly ours.
    model.load_state_dict(convert_twins_state_dict(reference.state_dict()))
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        expected = reference.forward_intermediates(x, intermediates_only=True)
        outs = model(x)
    assert len(outs) == len(expected) == 4
    for out, ref in zip(outs, expected):
        assert torch.allclose(out, ref, atol=1e-5)


def test_every_attention_is_4d_sdpa(monkeypatch):
    """Both attentions of every block reach SDPA with 4-D inputs, which
    fused kernels take (timm's locally-grouped attention gave it 5-D
    windows, which none takes)."""
    dims = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        torch.nn.functional, 'scaled_dot_product_attention',
        lambda q, *a, **k: dims.append(q.dim()) or sdpa(q, *a, **k))
    model = TwinsSVT(**TINY).eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 48, 64))
    assert dims == [4] * sum(TINY['depths'])


@pytest.mark.parametrize('saved_depths, loaded_depths, kind', [
    ((1, 1, 2, 2), (1, 1, 2, 1), 'unexpected keys: blocks.3.1'),
    ((1, 1, 2, 1), (1, 1, 2, 2), 'Missing keys: blocks.3.1'),
])
def test_twins_refuses_weights_of_another_depth(tmp_path, saved_depths,
                                                loaded_depths, kind):
    """E.g. ImageNet Twins-SVT-S (2, 2, 10, 4) into the paper's (.., 8)."""
    path = tmp_path / 'twins.pth'
    torch.save(TwinsSVT(**dict(TINY, depths=saved_depths)).state_dict(),
               path)
    model = TwinsSVT(
        **dict(TINY, depths=loaded_depths),
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(RuntimeError, match=kind):
        model.init_weights()


def test_twins_ignores_weights_of_stages_it_does_not_build(tmp_path):
    path = tmp_path / 'twins.pth'
    torch.save(TwinsSVT(**TINY).state_dict(), path)
    model = TwinsSVT(
        **TINY,
        out_indices=(0, 1, 2),
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert len(model.blocks) == 3


def test_default_depths_are_the_papers_sssa_modules():
    # (1, 1, 5, 4) SSSA modules = pairs of local and global blocks.
    model = TwinsSVT(out_indices=(0, ))
    assert [len(stage) for stage in model.blocks] == [2]
    assert model.blocks[0][1].attn.__class__.__name__ == 'GlobalSubSampleAttn'


def test_twins_unpickles_objects_only_when_asked(tmp_path):
    import argparse
    path = tmp_path / 'twins_with_args.pth'
    torch.save(
        dict(
            model=TwinsSVT(**TINY).state_dict(),
            args=argparse.Namespace(lr=0.1)), path)
    cfg = dict(type='Pretrained', checkpoint=str(path))
    with pytest.raises(Exception, match='twins_with_args.pth'):
        TwinsSVT(**TINY, init_cfg=cfg).init_weights()
    TwinsSVT(**TINY, init_cfg=dict(cfg, allow_unsafe_load=True)).init_weights()
