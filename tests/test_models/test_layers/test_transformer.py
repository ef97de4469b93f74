import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS

from mmttsrn.models.layers import ClipTransformer, FusedMultiheadAttention

D, HEADS = 16, 4


def _inputs(batch=2, tokens=10, queries=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randn(batch, tokens, D, generator=gen)
    pos = torch.randn(batch, tokens, D, generator=gen)
    query_pos = torch.randn(batch, queries, D, generator=gen)
    mask = torch.zeros(batch, tokens, dtype=torch.bool)
    mask[1, 7:] = True
    return src, mask, pos, query_pos


def _transformer(**kwargs):
    cfg = dict(
        type='ClipTransformer',
        embed_dims=D,
        num_heads=HEADS,
        num_encoder_layers=2,
        num_decoder_layers=3,
        feedforward_channels=32)
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def test_fused_attention_matches_torch():
    torch.manual_seed(0)
    fused = FusedMultiheadAttention(D, HEADS, dropout=0.1).eval()
    reference = nn.MultiheadAttention(
        D, HEADS, dropout=0.1, batch_first=True).eval()
    with torch.no_grad():
        for p in fused.parameters():
            p.normal_()
    missing, unexpected = reference.load_state_dict(
        fused.state_dict(), strict=False)
    assert not unexpected
    assert set(missing) <= {'bias_k', 'bias_v'}
    query = torch.randn(2, 5, D)
    key = torch.randn(2, 7, D)
    value = torch.randn(2, 7, D)
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[0, 4:] = True
    expected, _ = reference(
        query, key, value, key_padding_mask=mask, need_weights=False)
    out = fused(query, key, value, key_padding_mask=mask)
    assert out.shape == (2, 5, D)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(
        fused(query, key, value),
        reference(query, key, value, need_weights=False)[0],
        atol=1e-5)


def test_fused_attention_rejects_bad_heads():
    with pytest.raises(ValueError, match='num_heads'):
        FusedMultiheadAttention(10, 3)


@pytest.mark.parametrize('return_intermediate,num_out', [(True, 3),
                                                         (False, 1)])
def test_transformer_shapes(return_intermediate, num_out):
    model = _transformer(return_intermediate=return_intermediate).eval()
    src, mask, pos, query_pos = _inputs()
    hs, memory = model(src, mask, pos, query_pos)
    assert hs.shape == (num_out, 2, 6, D)
    assert memory.shape == (2, 10, D)
    # decoder.norm is applied to every returned output.
    assert torch.allclose(hs.mean(-1), torch.zeros(()), atol=1e-5)


def test_transformer_gradients_reach_every_parameter():
    model = _transformer().train()
    with torch.no_grad():
        # Non-zero biases, so no gradient vanishes only because of the
        # zero-bias initialisation.
        for name, param in model.named_parameters():
            if name.endswith('bias'):
                param.normal_()
    src, mask, pos, query_pos = _inputs()
    hs, memory = model(src, mask, pos, query_pos)
    gen = torch.Generator().manual_seed(1)
    # Random weights: a plain sum of LayerNorm outputs has no gradient.
    loss = (hs * torch.randn(hs.shape, generator=gen)).sum() + (
        memory * torch.randn(memory.shape, generator=gen)).sum()
    loss.backward()
    # The first decoder self-attention sees an all-zero target (DETR): its
    # values are the value bias alone, so its in-projection's gradient may
    # vanish (it only comes through attention dropout).
    may_vanish = 'decoder.layers.0.self_attn.in_proj_weight'
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        if name != may_vanish:
            assert param.grad.abs().sum() > 0, name


def test_padded_tokens_do_not_influence_outputs():
    model = _transformer().eval()
    src, mask, pos, query_pos = _inputs()
    hs, memory = model(src, mask, pos, query_pos)
    changed = src.clone()
    changed[mask] = 100 * torch.randn(int(mask.sum()), D)
    changed_pos = pos.clone()
    changed_pos[mask] = torch.randn(int(mask.sum()), D)
    hs2, memory2 = model(changed, mask, changed_pos, query_pos)
    assert torch.allclose(hs, hs2, atol=1e-5)
    assert torch.allclose(memory[~mask], memory2[~mask], atol=1e-5)
    # Without the mask the same change does move the outputs.
    hs3, _ = model(changed, None, changed_pos, query_pos)
    assert not torch.allclose(hs, hs3, atol=1e-3)


def test_state_dict_uses_detr_names():
    keys = set(_transformer().state_dict())
    expected = {
        'encoder.layers.0.self_attn.in_proj_weight',
        'encoder.layers.0.self_attn.in_proj_bias',
        'encoder.layers.0.self_attn.out_proj.weight',
        'encoder.layers.0.linear1.weight', 'encoder.layers.0.linear2.bias',
        'encoder.layers.0.norm1.weight', 'encoder.layers.0.norm2.bias',
        'decoder.layers.0.self_attn.in_proj_weight',
        'decoder.layers.0.multihead_attn.in_proj_weight',
        'decoder.layers.0.multihead_attn.out_proj.weight',
        'decoder.layers.0.norm3.weight', 'decoder.layers.2.linear1.weight',
        'decoder.norm.weight', 'decoder.norm.bias'
    }
    assert expected <= keys
    layer_keys = {k for k in keys if k.startswith('encoder.layers.0.')}
    assert len(layer_keys) == 12
    assert not any(k.startswith('encoder.norm') for k in keys)


def test_builds_activation_from_config():
    model = _transformer(act_cfg=dict(type='ReLU'))
    assert isinstance(model.encoder.layers[0].activation, nn.ReLU)
    default = ClipTransformer(
        embed_dims=D,
        num_heads=HEADS,
        num_encoder_layers=1,
        num_decoder_layers=1,
        feedforward_channels=8)
    assert isinstance(default.decoder.layers[0].activation, nn.GELU)


def test_fused_attention_mask_per_query():
    """``attn_mask`` (B, L, S) hides keys from single queries, on top of the
    key padding mask."""
    torch.manual_seed(0)
    fused = FusedMultiheadAttention(D, HEADS).eval()
    query, key, value = (torch.randn(2, 3, D), torch.randn(2, 6, D),
                         torch.randn(2, 6, D))
    padding = torch.zeros(2, 6, dtype=torch.bool)
    padding[1, 5] = True
    attn_mask = torch.zeros(2, 3, 6, dtype=torch.bool)
    attn_mask[0, 1, :4] = True  # query 1 of clip 0 sees keys 4, 5 only
    attn_mask[1, 2, 1:] = True  # query 2 of clip 1 sees key 0 only
    out = fused(query, key, value, key_padding_mask=padding,
                attn_mask=attn_mask)
    # Each query alone, given only the keys it may see.
    torch.testing.assert_close(
        out[0, 1], fused(query[:1, 1:2], key[:1, 4:], value[:1, 4:])[0, 0])
    torch.testing.assert_close(
        out[1, 2], fused(query[1:, 2:3], key[1:, :1], value[1:, :1])[0, 0])
    torch.testing.assert_close(
        out[1, 0], fused(query[1:, :1], key[1:, :5], value[1:, :5])[0, 0])


def test_decoder_passes_each_layer_mask_to_the_next():
    model = _transformer().eval()
    src, mask, pos, query_pos = _inputs()
    memory = model.encode(src, mask, pos)
    seen = []

    def block_all_but_first_token(layer_out):
        seen.append(layer_out)
        blocked = torch.ones(*layer_out.shape[:2], src.shape[1],
                             dtype=torch.bool)
        blocked[..., 0] = False
        return blocked

    hs = model.decode(memory, mask, pos, query_pos,
                      attn_mask_fn=block_all_but_first_token)
    # Called on the normed output of every layer but the last.
    assert len(seen) == 2
    torch.testing.assert_close(seen[0], hs[0])
    torch.testing.assert_close(seen[1], hs[1])
    # The first layer attends everywhere: the same as without masks.
    free = model.decode(memory, mask, pos, query_pos)
    torch.testing.assert_close(hs[0], free[0])
    assert not torch.allclose(hs[1], free[1])
    # encode + decode is forward.
    torch.testing.assert_close(
        model(src, mask, pos, query_pos)[0], free)
