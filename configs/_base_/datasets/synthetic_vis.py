# The synthetic YouTube-VIS-format dataset (4 shape categories, 64-128 px
# frames, 4-12 frames per video), made by
#   python tools/dataset_converters/make_synthetic_vis.py \
#       --out data/synthetic_vis --num-train 40 --num-val 10 --seed 0
# The pipelines of YouTube-VIS 2019 (see youtube_vis_2019.py for the
# variables), with smaller clips and frames, written out in full; train on
# train.json, validate and test with AP on the annotated valid.json
# (valid_unannotated.json mimics the server split, for a format-only test).
_base_ = './youtube_vis_2019.py'

data_root = 'data/synthetic_vis/'
dataset_version = None
num_frames = 4
img_scale = (128, 96)
backend_args = None

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
    dataset=dict(
        data_root=data_root,
        dataset_version=dataset_version,
        ann_file='annotations/train.json',
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        dataset_version=dataset_version,
        ann_file='annotations/valid.json',
        data_prefix=dict(img_path='valid/JPEGImages'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

test_evaluator = dict(_delete_=True, **_base_.val_evaluator)
