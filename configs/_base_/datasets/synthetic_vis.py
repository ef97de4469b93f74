# The synthetic YouTube-VIS-format dataset (4 shape categories, 64-128 px
# frames, 4-12 frames per video), made by
#   python tools/dataset_converters/make_synthetic_vis.py \
#       --out data/synthetic_vis --num-train 40 --num-val 10 --seed 0
# Train on train.json; validate and test with AP on the annotated valid.json
# (valid_unannotated.json mimics the server split, for a format-only test).
#
# `custom_imports` (to register mmttsrn) and `default_scope` come from
# _base_/default_runtime.py. Variables a config may change: num_frames (T),
# img_scale ((w, h) of the mmcv Resize) and backend_args; see
# youtube_vis_2019.py for how to rebuild the pipelines after changing them.
dataset_type = 'YouTubeVISOfficialDataset'
data_root = 'data/synthetic_vis/'
backend_args = None
num_frames = 4
img_scale = (128, 96)

train_pipeline = [
    dict(type='ClipFrameSample', num_frames=num_frames),
    dict(
        type='TransformBroadcaster',
        share_random_params=True,
        transforms=[
            dict(type='LoadVideoFrame', backend_args=backend_args),
            dict(type='LoadTrackAnnotations', with_mask=True),
            dict(type='Resize', scale=img_scale, keep_ratio=False),
            dict(type='RandomFlip', prob=0.5),
        ]),
    dict(type='PackTrackInputs')
]
# A test sample is a whole video; masks stay at the original frame size.
test_pipeline = [
    dict(
        type='TransformBroadcaster',
        transforms=[
            dict(type='LoadVideoFrame', backend_args=backend_args),
            dict(type='Resize', scale=img_scale, keep_ratio=False),
            dict(type='LoadTrackAnnotations', with_mask=True),
        ]),
    dict(type='PackTrackInputs')
]

train_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='TrackAspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/train.json',
        data_prefix=dict(img_path='train/JPEGImages'),
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/valid.json',
        data_prefix=dict(img_path='valid/JPEGImages'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='YouTubeVISResultsMetric',
    metric='youtube_vis_ap',
    metric_items=['mAP', 'mAP_50', 'mAP_75', 'AR@1', 'AR@10'])
test_evaluator = val_evaluator
