# TT-SRN with the paper's Twins-SVT backbone (SPEC section "Architecture").
num_classes = 40
num_queries = 10  # n: instance slots per frame (T * n queries)
embed_dims = 384  # d: d/3 = 128 channels per t, y, x positional axis

model = dict(
    type='TTSRN',
    data_preprocessor=dict(
        type='TrackDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_mask=True,
        pad_size_divisor=32),
    backbone=dict(
        type='TwinsSVT',
        embed_dims=(64, 128, 256, 512),
        # The paper's (1, 1, 5, 4) SSSA modules, each a locally-grouped and a
        # global sub-sampled block: timm counts those blocks singly.
        depths=(2, 2, 10, 8),
        num_heads=(2, 4, 8, 16),
        window_sizes=(7, 7, 7, 7),
        sr_ratios=(8, 4, 2, 1),
        out_indices=(0, 1, 2, 3),
        # ImageNet Twins weights from a local file (timm or official keys):
        # init_cfg=dict(type='Pretrained', checkpoint='checkpoints/twins.pth')
        init_cfg=None),
    track_head=dict(
        type='TTSRNHead',
        num_classes=num_classes,
        # num_frames (T, frames per clip) is the config's top-level
        # num_frames, which the dataset configs define: the config loaders
        # set it here (mmttsrn.utils.sync_num_frames).
        num_queries=num_queries,
        in_channels=[64, 128, 256, 512],
        embed_dims=embed_dims,
        positional_encoding=dict(
            type='SpatioTemporalSineEncoding', normalize=True),
        transformer=dict(
            type='ClipTransformer',
            num_heads=8,
            num_encoder_layers=6,
            num_decoder_layers=6,
            feedforward_channels=2048,
            dropout=0.1,
            act_cfg=dict(type='GELU'),
            return_intermediate=True),
        cls_head=dict(
            type='SRNHead',
            siren_channels=(128, ),
            hidden_channels=64,
            dropout=0.2),
        reg_head=dict(
            type='SRNHead',
            siren_channels=(128, 64),
            hidden_channels=32,
            dropout=0.2),
        mask_head=dict(
            type='SequenceMaskHead',
            num_heads=8,
            conv3d_channels=(12, 12, 12),
            conv3d_dilation=2,
            conv3d_groups=4,
            # CPU inference: the 2-D stack one frame (n instance-frames) at
            # a time, written into the 3-D convs' volumes (docs/benchmark.md).
            cpu_frame_chunk=1),
        loss_cls=dict(
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0,
            # No-object weight; the K+1 class weights follow num_classes.
            bg_cls_weight=0.1),
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0),
        loss_mask=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_dice=dict(
            type='DiceLoss',
            use_sigmoid=True,
            activate=True,
            naive_dice=True,
            eps=1.0,
            loss_weight=1.0),
        train_cfg=dict(
            matcher=dict(
                type='InstanceSequenceMatcher',
                match_costs=[
                    dict(type='SequenceClassificationCost', weight=1.0),
                    dict(type='SequenceBBoxL1Cost', weight=5.0),
                    dict(type='SequenceIoUCost', iou_mode='giou', weight=2.0)
                ]))),
    test_cfg=dict(
        max_per_video=10,
        score_thr=0.0,
        mask_thr=0.5,
        # CPU inference: two frames per backbone call keep its activations
        # in malloc's heap and the cache (docs/benchmark.md).
        cpu_backbone_chunk=2,
        linker=dict(type='WindowLinker', overlap=6, iou_thr=0.1)))
