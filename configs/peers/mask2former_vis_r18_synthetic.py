# A peer for the quickstart (issue 9, item 4): mmdet's Mask2Former-VIS on
# the same synthetic data, pipelines, dataloaders, metric and schedule as
# configs/ttsrn/ttsrn_synthetic.py, shrunk the same way (ResNet-18 from
# scratch, width 128, 20 queries; mmdet's depths: 6 pixel-decoder and 9
# decoder layers), so that AP against CPU time compares the
# two models and nothing else.
# mmdet's recipe: mmdet/configs/mask2former_vis/
# mask2former_r50_8xb2-8e_youtubevis2019.py.
_base_ = ['../ttsrn/ttsrn_synthetic.py']
num_classes = _base_.num_classes
num_frames = _base_.num_frames  # T of the training clip
feat_channels = 128

model = dict(
    _delete_=True,
    type='Mask2FormerVideo',
    data_preprocessor=dict(
        type='TrackDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_mask=True,
        pad_size_divisor=32),
    # From scratch (nothing can be downloaded): BN is trained, not frozen.
    backbone=dict(
        type='ResNet',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    track_head=dict(
        type='Mask2FormerTrackHead',
        in_channels=[64, 128, 256, 512],  # ResNet-18
        strides=[4, 8, 16, 32],
        feat_channels=feat_channels,
        out_channels=feat_channels,
        num_classes=num_classes,
        num_queries=20,
        num_frames=num_frames,
        num_transformer_feat_level=3,
        pixel_decoder=dict(
            type='MSDeformAttnPixelDecoder',
            num_outs=3,
            norm_cfg=dict(type='GN', num_groups=32),
            act_cfg=dict(type='ReLU'),
            encoder=dict(
                num_layers=6,
                layer_cfg=dict(
                    self_attn_cfg=dict(
                        embed_dims=feat_channels,
                        num_heads=8,
                        num_levels=3,
                        num_points=4,
                        im2col_step=128,
                        dropout=0.0,
                        batch_first=True),
                    ffn_cfg=dict(
                        embed_dims=feat_channels,
                        feedforward_channels=4 * feat_channels,
                        num_fcs=2,
                        ffn_drop=0.0,
                        act_cfg=dict(type='ReLU', inplace=True)))),
            positional_encoding=dict(
                num_feats=feat_channels // 2, normalize=True)),
        enforce_decoder_input_project=False,
        positional_encoding=dict(
            type='SinePositionalEncoding3D',
            num_feats=feat_channels // 2,
            normalize=True),
        transformer_decoder=dict(
            return_intermediate=True,
            num_layers=9,
            layer_cfg=dict(
                self_attn_cfg=dict(
                    embed_dims=feat_channels,
                    num_heads=8,
                    dropout=0.0,
                    batch_first=True),
                cross_attn_cfg=dict(
                    embed_dims=feat_channels,
                    num_heads=8,
                    dropout=0.0,
                    batch_first=True),
                ffn_cfg=dict(
                    embed_dims=feat_channels,
                    feedforward_channels=8 * feat_channels,
                    num_fcs=2,
                    ffn_drop=0.0,
                    act_cfg=dict(type='ReLU', inplace=True))),
            init_cfg=None),
        loss_cls=dict(
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=2.0,
            reduction='mean',
            class_weight=[1.0] * num_classes + [0.1]),
        loss_mask=dict(
            type='CrossEntropyLoss',
            use_sigmoid=True,
            reduction='mean',
            loss_weight=5.0),
        loss_dice=dict(
            type='DiceLoss',
            use_sigmoid=True,
            activate=True,
            reduction='mean',
            naive_dice=True,
            eps=1.0,
            loss_weight=5.0),
        train_cfg=dict(
            # mmdet's 12544 points per mask are meant for ~1/5 of the pixels
            # of a full-size stride-4 mask; a quickstart frame's mask has
            # 32x24 = 768 pixels, so 768 points (the head's forward ~3x
            # faster on one CPU thread: 0.62 -> 0.22 s).
            num_points=768,
            oversample_ratio=3.0,
            importance_sample_ratio=0.75,
            assigner=dict(
                type='HungarianAssigner',
                match_costs=[
                    dict(type='ClassificationCost', weight=2.0),
                    dict(
                        type='CrossEntropyLossCost',
                        weight=5.0,
                        use_sigmoid=True),
                    dict(type='DiceCost', weight=5.0, pred_act=True, eps=1.0)
                ]),
            sampler=dict(type='MaskPseudoSampler'))),
    init_cfg=None)

# Optimiser, lr schedule and epochs: the base's (AdamW, lr 5e-4 for all
# parameters, weight decay 1e-4, gradient clip 0.1, lr x0.1 late), so that
# both models get the same recipe and budget. mmdet's Mask2Former recipe
# (lr 1e-4, backbone x0.1, weight decay 0.05, clip 0.01) is tuned for
# fine-tuning a pretrained model. Both clips are far below the gradient
# norm of this model from scratch (thousands at the start), so either
# always clips and Adam's normalised step hardly changes: the base's 0.1
# is kept. From mmdet: no weight decay on the query and level embeddings.
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'query_embed': dict(lr_mult=1.0, decay_mult=0.0),
            'query_feat': dict(lr_mult=1.0, decay_mult=0.0),
            'level_embed': dict(lr_mult=1.0, decay_mult=0.0),
        }))

# The base's hooks are TT-SRN's (CollapseMonitorHook reads TTSRNHead).
custom_hooks = []
