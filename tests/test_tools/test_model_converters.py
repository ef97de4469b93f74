"""DETR and Twins checkpoint converters, on state dicts with the real key
names and layouts built from our own modules and timm."""
import argparse
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from timm.models.twins import Twins
from tool_loader import load_tool

from mmttsrn.engine import UnsafeCheckpointError
from mmttsrn.models.layers import ClipTransformer
from mmttsrn.utils import sync_num_frames

ROOT = Path(__file__).parents[2]


def _tool(name):
    return load_tool(f'tools/model_converters/{name}.py')


detr_to_ttsrn = _tool('detr_to_ttsrn')
twins_to_ttsrn = _tool('twins_to_ttsrn')

TWINS = dict(
    embed_dims=(8, 16, 32, 64), depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 4))
D, FFN, LAYERS = 32, 64, 2


def tiny_model(num_frames=3, num_queries=2):
    return MODELS.build(
        dict(
            type='TTSRN',
            data_preprocessor=dict(type='TrackDataPreprocessor'),
            backbone=dict(type='TwinsSVT', **TWINS),
            track_head=dict(
                type='TTSRNHead',
                num_classes=3,
                num_frames=num_frames,
                num_queries=num_queries,
                in_channels=list(TWINS['embed_dims']),
                embed_dims=D,
                positional_encoding=dict(
                    type='SpatioTemporalSineEncoding', num_feats=(12, 10, 10)),
                transformer=dict(
                    type='ClipTransformer',
                    num_heads=4,
                    num_encoder_layers=LAYERS,
                    num_decoder_layers=LAYERS,
                    feedforward_channels=FFN),
                mask_head=dict(
                    type='SequenceMaskHead',
                    num_heads=4,
                    num_groups=1,
                    conv3d_channels=(4, 4),
                    conv3d_groups=2))))


def detr_state_dict(transformer=None, num_queries=100):
    """A state dict laid out as DETR's R-50 checkpoint ``model``."""
    torch.manual_seed(0)
    if transformer is None:
        transformer = ClipTransformer(
            embed_dims=D,
            num_heads=4,
            num_encoder_layers=LAYERS,
            num_decoder_layers=LAYERS,
            feedforward_channels=FFN)
    d = transformer.embed_dims
    state = {
        f'transformer.{k}': torch.randn_like(v)
        for k, v in transformer.state_dict().items()
    }
    state.update({
        'query_embed.weight': torch.randn(num_queries, d),
        'input_proj.weight': torch.randn(d, 2048, 1, 1),
        'input_proj.bias': torch.randn(d),
        'class_embed.weight': torch.randn(92, d),
        'class_embed.bias': torch.randn(92),
        'backbone.0.body.conv1.weight': torch.randn(64, 3, 7, 7),
        'backbone.0.body.layer1.0.bn1.running_mean': torch.randn(64),
    })
    for i, (c_in, c_out) in enumerate(((d, d), (d, d), (d, 4))):
        state[f'bbox_embed.layers.{i}.weight'] = torch.randn(c_out, c_in)
        state[f'bbox_embed.layers.{i}.bias'] = torch.randn(c_out)
    return state


def test_detr_layout_matches_our_transformer_names():
    keys = set(detr_state_dict())
    for key in ('transformer.encoder.layers.0.self_attn.in_proj_weight',
                'transformer.encoder.layers.1.norm2.bias',
                'transformer.decoder.layers.0.multihead_attn.out_proj.weight',
                'transformer.decoder.layers.1.norm3.weight',
                'transformer.decoder.norm.weight'):
        assert key in keys, key


def test_detr_converts_into_a_tiny_model():
    detr = detr_state_dict()
    converted, skipped = detr_to_ttsrn.convert_detr(
        detr, num_frames=3, num_queries=2)
    model = tiny_model(num_frames=3, num_queries=2)
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert unexpected == []
    assert set(converted) <= set(model.state_dict())
    # Only the parts the converter documents as not converted are missing.
    not_converted = ('backbone.', 'track_head.input_proj.',
                     'track_head.cls_head.', 'track_head.reg_head.',
                     'track_head.mask_head.')
    assert missing and all(k.startswith(not_converted) for k in missing)
    assert not any(k.startswith('track_head.transformer.') for k in missing)
    assert sorted(skipped) == [
        'backbone.', 'bbox_embed.', 'class_embed.', 'input_proj.'
    ]
    assert len(skipped['bbox_embed.']) == 6

    state = model.state_dict()
    key = 'encoder.layers.1.self_attn.in_proj_weight'
    assert torch.equal(state[f'track_head.transformer.{key}'],
                       detr[f'transformer.{key}'])
    queries = state['track_head.query_embed.weight']
    assert queries.shape == (3 * 2, D)
    for t in range(3):
        for j in range(2):
            assert torch.equal(queries[t * 2 + j],
                               detr['query_embed.weight'][j])


def test_detr_cli_writes_a_loadable_checkpoint(tmp_path, capsys):
    detr = detr_state_dict()
    src, dst = tmp_path / 'detr.pth', tmp_path / 'out' / 'detr_ttsrn.pth'
    # Training checkpoints also hold DETR's argparse arguments: unpickling
    # those needs the user's explicit --unsafe-load.
    torch.save(dict(model=detr, args=argparse.Namespace(lr=1e-4)), src)
    with pytest.raises(UnsafeCheckpointError,
                       match=r'detr.pth .*argparse.Namespace.*--unsafe-load'):
        detr_to_ttsrn.main([str(src), str(dst)])
    assert not dst.exists()
    detr_to_ttsrn.main([
        str(src),
        str(dst), '--num-frames', '3', '--num-queries', '2', '--unsafe-load'
    ])
    out = capsys.readouterr().out
    assert 'skipped 2 input_proj.* tensors' in out
    assert 'fit only a TT-SRN of width 32' in out

    checkpoint = torch.load(dst, weights_only=True)
    assert checkpoint['meta']['num_frames'] == 3
    model = tiny_model()
    load_checkpoint(model, str(dst), map_location='cpu', strict=False)
    assert torch.equal(model.track_head.transformer.decoder.norm.weight,
                       detr['transformer.decoder.norm.weight'])


def test_detr_errors(tmp_path):
    detr = detr_state_dict(num_queries=5)
    with pytest.raises(ValueError, match=r'num_queries must be in \[1, 5\]'):
        detr_to_ttsrn.convert_detr(detr, num_frames=2, num_queries=6)
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        detr_to_ttsrn.main([str(tmp_path / 'missing.pth'), 'x.pth'])
    torch.save({'model': {'foo': torch.zeros(1)}}, tmp_path / 'other.pth')
    with pytest.raises(KeyError, match='not a DETR checkpoint'):
        detr_to_ttsrn.main([str(tmp_path / 'other.pth'), 'x.pth'])


def test_detr_width_is_checked_against_a_config():
    dims = dict(
        embed_dims=256,
        num_detr_queries=100,
        feedforward_channels=2048,
        num_encoder_layers=6,
        num_decoder_layers=6)
    default = sync_num_frames(
        Config.fromfile(str(ROOT / 'configs/ttsrn/ttsrn_yvis.py')))
    with pytest.raises(ValueError, match="width is 384 but DETR's is 256"):
        detr_to_ttsrn.check_config(default, dims)
    detr_init = sync_num_frames(
        Config.fromfile(str(ROOT / 'configs/ttsrn/ttsrn_yvis_detr_init.py')))
    assert detr_to_ttsrn.check_config(detr_init, dims) == (36, 10)
    with pytest.raises(ValueError, match='feedforward_channels'):
        detr_to_ttsrn.check_config(detr_init,
                                   dict(dims, feedforward_channels=1024))


def test_detr_init_config_takes_a_full_size_detr_checkpoint():
    cfg = sync_num_frames(
        Config.fromfile(str(ROOT / 'configs/ttsrn/ttsrn_yvis_detr_init.py')))
    model = MODELS.build(cfg.model)
    assert model.track_head.positional_encoding.embed_dims == 256
    # DETR's R-50 layout at its real sizes: d=256, FFN 2048, 6+6 layers.
    detr = {
        f'transformer.{k}': v
        for k, v in model.track_head.transformer.state_dict().items()
    }
    detr['query_embed.weight'] = torch.randn(100, 256)
    detr['input_proj.weight'] = torch.randn(256, 2048, 1, 1)
    dims = detr_to_ttsrn.detr_dims(detr)
    assert dims == dict(
        embed_dims=256,
        num_detr_queries=100,
        feedforward_channels=2048,
        num_encoder_layers=6,
        num_decoder_layers=6)
    num_frames, num_queries = detr_to_ttsrn.check_config(cfg, dims)
    converted, _ = detr_to_ttsrn.convert_detr(detr, num_frames, num_queries)
    state = model.state_dict()
    for key, value in converted.items():
        assert state[key].shape == value.shape, key


def timm_twins(num_classes=10):
    return Twins(
        img_size=32,
        num_classes=num_classes,
        embed_dims=TWINS['embed_dims'],
        depths=TWINS['depths'],
        num_heads=TWINS['num_heads'],
        wss=(7, 7, 7, 7))


@pytest.mark.parametrize('layout', ['timm', 'official'])
def test_twins_converts_into_a_tiny_model(tmp_path, layout):
    torch.manual_seed(0)
    twins = timm_twins().state_dict()
    assert 'head.weight' in twins and 'norm.weight' in twins
    # timm saves a bare state dict; the official code wraps it in 'model'
    # and keeps DataParallel's 'module.' prefix.
    raw = twins if layout == 'timm' else {
        'model': {
            f'module.{k}': v
            for k, v in twins.items()
        }
    }
    src, dst = tmp_path / 'twins.pth', tmp_path / 'twins_ttsrn.pth'
    torch.save(raw, src)
    twins_to_ttsrn.main([str(src), str(dst)])

    converted = torch.load(dst, weights_only=True)['state_dict']
    assert all(k.startswith('backbone.') for k in converted)
    assert not any(
        k.startswith(('backbone.head.', 'backbone.norm.')) for k in converted)
    model = tiny_model()
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert unexpected == []
    assert set(converted) <= set(model.state_dict())
    assert not any(k.startswith('backbone.') for k in missing)
    assert torch.equal(model.backbone.blocks[2][0].attn.qkv.weight,
                       twins['blocks.2.0.attn.qkv.weight'])


def test_twins_output_works_as_backbone_init_cfg(tmp_path):
    torch.manual_seed(1)
    twins = timm_twins().state_dict()
    src, dst = tmp_path / 'twins.pth', tmp_path / 'twins_ttsrn.pth'
    torch.save(twins, src)
    twins_to_ttsrn.main([str(src), str(dst)])
    backbone = MODELS.build(
        dict(
            type='TwinsSVT',
            **TWINS,
            init_cfg=dict(type='Pretrained', checkpoint=str(dst))))
    backbone.init_weights()
    assert torch.equal(backbone.patch_embeds[0].proj.weight,
                       twins['patch_embeds.0.proj.weight'])


def test_twins_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        twins_to_ttsrn.main([str(tmp_path / 'missing.pth'), 'x.pth'])
    torch.save({'model': {'foo': torch.zeros(1)}}, tmp_path / 'other.pth')
    with pytest.raises(KeyError, match='not a Twins checkpoint'):
        twins_to_ttsrn.main([str(tmp_path / 'other.pth'), 'x.pth'])


class _Touch:
    """A payload with a visible effect: it creates a file when unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path), ))


def test_twins_malicious_pickle_is_refused_unless_asked(tmp_path):
    marker = tmp_path / 'payload_ran'
    twins = timm_twins().state_dict()
    src, dst = tmp_path / 'twins.pth', tmp_path / 'twins_ttsrn.pth'
    torch.save(dict(model=twins, extra=_Touch(marker)), src)
    backbone = MODELS.build(
        dict(
            type='TwinsSVT',
            **TWINS,
            init_cfg=dict(type='Pretrained', checkpoint=str(src))))
    with pytest.raises(UnsafeCheckpointError, match='twins.pth'):
        backbone.init_weights()
    with pytest.raises(UnsafeCheckpointError, match='--unsafe-load'):
        twins_to_ttsrn.main([str(src), str(dst)])
    assert not marker.exists() and not dst.exists()
    # The user's explicit flag; the output then holds plain tensors.
    twins_to_ttsrn.main([str(src), str(dst), '--unsafe-load'])
    assert marker.exists()
    assert torch.load(dst, weights_only=True)['state_dict']
