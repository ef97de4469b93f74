# The quickstart: the paper's model, shrunk to learn the synthetic shapes
# dataset on a 2-core CPU in a few minutes (`make quickstart`).
_base_ = [
    '../_base_/models/ttsrn_twins.py', '../_base_/datasets/synthetic_vis.py',
    '../_base_/schedules/schedule_18e.py', '../_base_/default_runtime.py'
]
num_classes = 4
embed_dims = 96

model = dict(
    backbone=dict(
        embed_dims=(32, 64, 128, 256),
        depths=(1, 1, 1, 1),
        num_heads=(1, 2, 4, 8)),
    track_head=dict(
        num_classes=num_classes,
        num_queries=4,
        in_channels=[32, 64, 128, 256],
        embed_dims=embed_dims,
        # No pretrained backbone here: a GroupNorm keeps its growing features
        # at the scale of the positional encoding (else the memory collapses
        # to one vector and every query predicts the same thing).
        input_proj_norm=dict(type='GN', num_groups=32),
        query_content=True,
        # Measured (docs/training_diagnostics.md): with the paper's post-norm
        # layers the encoder memory of a from-scratch model collapses to one
        # vector per clip within ~100 iterations (token spread 0.75 ->
        # 0.007); pre-norm keeps it spread.
        # The decoder's cross-attention then stays near uniform for the whole
        # CPU budget, so no slot sees its own instance: Mask2Former's masked
        # attention restricts each slot to its predicted masks, which needs
        # per-layer masks from query-pixel dot products (pixel_embed).
        # The class and box heads also read the backbone features under each
        # slot's mask.
        mask_pooling=True,
        masked_attention=True,
        # Bilinear up-sampling of stride-4 logits caps the IoU of a 20-pixel
        # shape near 0.9; feature-guided convex up-sampling to the input size
        # took a model overfit on one clip from AP 0.70 to 1.00.
        mask_upsample=dict(type='ConvexUpsample'),
        # The class head also reads each mask's silhouette, for categories
        # that only their shape tells apart.
        mask_shape_encoder=dict(type='MaskShapeEncoder'),
        transformer=dict(
            num_encoder_layers=3,
            num_decoder_layers=3,
            feedforward_channels=256,
            dropout=0.0,
            pre_norm=True),
        mask_head=dict(
            conv_channels=(104, 48, 24, 16, 8),
            num_groups=4,
            conv3d_channels=(8, 8),
            conv3d_groups=4,
            pixel_embed=True),
        # Boxes are learnt last, masks first: match on masks and classes
        # (Mask2Former's costs) and supervise every decoder layer with the
        # last layer's assignment, so that a gt keeps its slot.
        train_cfg=dict(
            matcher=dict(
                type='InstanceSequenceMatcher',
                match_costs=[
                    dict(type='SequenceClassificationCost', weight=2.0),
                    dict(type='SequenceCrossEntropyLossCost', weight=5.0),
                    dict(type='SequenceDiceCost', weight=5.0)
                ]),
            share_matching=True,
            # Mask2Former's point-sampled mask losses, mostly at uncertain
            # pixels, instead of every pixel: colour set AP 60.1 -> 69.1
            # (AP50 82.4 -> 89.6) on one seed, 65.6 / 89.2 on another;
            # shape-only set 27.4 / 37.1 -> 39.9 / 28.9 (docs/results.md).
            num_points=768)),
    # Instances of the synthetic videos enter late and leave early: no mask
    # where a slot's class says no-object (+3.1 AP, +7.8 AP50 measured).
    # A track whose category is uncertain is also reported under its other
    # categories, as Mask2Former-VIS does: +4.1 to +5.1 AP on three
    # shape-only checkpoints, no change on the colour set (docs/results.md).
    test_cfg=dict(
        drop_absent_frames=True, multi_label=True, linker=dict(overlap=1)))

# From scratch, so one learning rate for all; 35 epochs of the 120 training
# videos `make quickstart` generates (about 11.5 min on 2 cores).
max_epochs = 35
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# One parameter group (no per-key multipliers) lets the fused AdamW kernel
# (the base schedule's fused=True) update all weights at once: 5 ms instead
# of 20 ms per step here.
optim_wrapper = dict(
    optimizer=dict(lr=5e-4), paramwise_cfg=dict(_delete_=True))
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[28],
        gamma=0.1)
]
# Loading a clip of small frames takes a few ms: in the main process it
# costs less than a worker process competing for the 2 cores (0.15 instead
# of 0.19 s per iteration measured).
train_dataloader = dict(num_workers=0, persistent_workers=False)
val_dataloader = dict(num_workers=1)
test_dataloader = dict(num_workers=1)
# A checkpoint every epoch (the last two kept), so an interrupted run resumes.
default_hooks = dict(
    logger=dict(interval=20), checkpoint=dict(interval=1, max_keep_ckpts=2))
# Logs diag/* signs of a collapsed head (see docs/training_diagnostics.md).
custom_hooks = [dict(type='CollapseMonitorHook', interval=100)]
