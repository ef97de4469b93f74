# YouTube-VIS 2019, read from the official JSON files as downloaded.
#
# Layout under data_root:
#   train/JPEGImages/<video>/<frame>.jpg    valid/JPEGImages/<video>/...
#   annotations/train.json
#   annotations/valid.json  (unannotated: scored by the server)
#   annotations/train_sub.json, annotations/val_sub.json  (local split) made by
#     python tools/dataset_converters/split_youtube_vis.py \
#         data/youtube_vis_2019/annotations/train.json --val-ratio 0.1
#
# Default: train on train_sub.json, validate (AP) on val_sub.json; test on the
# official valid.json and write the zipped results.json for the server.
# For the final server run, train on the full train.json: set
#   train_dataloader = dict(dataset=dict(ann_file='annotations/train.json'))
# To test with AP on the local split instead of the server format:
#   test_dataloader = val_dataloader
#   test_evaluator = val_evaluator
#
# `custom_imports` (to register mmttsrn) and `default_scope` come from
# _base_/default_runtime.py.
#
# Variables a config may change:
# - num_frames (T, frames per training clip): the only place T is written.
#   A config sets `num_frames = 18` alone (as configs/ttsrn/ttsrn_yvis_18f.py
#   does), or a run `--cfg-options num_frames=18`: the config loaders
#   (mmttsrn.utils.sync_num_frames) set the ClipFrameSample below and the
#   model's track_head.num_frames from it.
# - img_scale ((w, h) of the mmcv Resize; the paper's frames are 300 x 540)
#   and backend_args. They are used when this file is read, so a config that
#   changes them writes the pipelines that use them out again, in full, and
#   hands them to the dataloaders (as synthetic_vis.py does):
#     img_scale = (640, 360)
#     train_pipeline = [dict(type='ClipFrameSample', num_frames=num_frames),
#                       dict(type='TransformBroadcaster', ...),
#                       dict(type='PackTrackInputs')]
#     train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
#   rather than patching a step found by its list index.
dataset_type = 'YouTubeVISOfficialDataset'
data_root = 'data/youtube_vis_2019/'
dataset_version = '2019'
backend_args = None
num_frames = 36
img_scale = (540, 300)

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
        dataset_version=dataset_version,
        ann_file='annotations/train_sub.json',
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
        dataset_version=dataset_version,
        ann_file='annotations/val_sub.json',
        data_prefix=dict(img_path='train/JPEGImages'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        dataset_version=dataset_version,
        ann_file='annotations/valid.json',
        data_prefix=dict(img_path='valid/JPEGImages'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))

val_evaluator = dict(
    type='YouTubeVISResultsMetric',
    metric='youtube_vis_ap',
    metric_items=['mAP', 'mAP_50', 'mAP_75', 'AR@1', 'AR@10'])
# Writes <outfile_prefix>.json and <outfile_prefix>.submission_file.zip;
# tools/test.py sets outfile_prefix to <work_dir>/results unless given.
test_evaluator = dict(
    type='YouTubeVISResultsMetric',
    metric='youtube_vis_ap',
    format_only=True)
