# TT-SRN with its transformer and queries initialised from DETR (COCO).
#
# DETR's width is d = 256 (8 heads, 2048-wide FFNs, 6 + 6 layers), so this
# model uses d = 256 instead of the paper's 384. 256 is not divisible by 6,
# so the 3-D positional encoding splits it unevenly over t, y, x
# (86 + 86 + 84; each part must be even). The FFN activation is DETR's ReLU,
# so that DETR's FFN weights compute what they were trained to.
#
# Make the checkpoint from DETR's public R-50 weights (a local file):
#   python tools/model_converters/detr_to_ttsrn.py \
#       checkpoints/detr-r50-e632da11.pth checkpoints/detr_r50_ttsrn.pth \
#       --config configs/ttsrn/ttsrn_yvis_detr_init.py
# It holds track_head.transformer.* and track_head.query_embed.weight (DETR's
# first 10 queries tiled over the 36 frames); everything else (backbone,
# input projection, SRN heads, mask head) starts as in ttsrn_yvis.py.
#
# The mask head's default widths derive from d: (d + 8, d/2, d/4, d/8, d/16)
# = (264, 128, 64, 32, 16), all divisible by its 8 GroupNorm groups, so it
# needs no override.
_base_ = './ttsrn_yvis.py'
embed_dims = 256

model = dict(
    track_head=dict(
        embed_dims=embed_dims,
        positional_encoding=dict(num_feats=(86, 86, 84)),
        transformer=dict(
            num_heads=8,
            num_encoder_layers=6,
            num_decoder_layers=6,
            feedforward_channels=2048,
            act_cfg=dict(type='ReLU'))))

load_from = 'checkpoints/detr_r50_ttsrn.pth'
