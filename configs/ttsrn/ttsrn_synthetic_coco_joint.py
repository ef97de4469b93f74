# The quickstart model trained on the synthetic videos plus synthetic still
# images as pseudo-videos (the COCO joint training of
# ttsrn_yvis_coco_joint.py, on data that needs no download):
#   python tools/dataset_converters/make_synthetic_vis.py \
#       --out data/synthetic_vis --num-train 120 --num-val 20
#   python tools/dataset_converters/make_synthetic_coco.py \
#       --out data/synthetic_coco --num-images 240
# The images have the videos' categories, so no category map is needed.
#
# Same budget as the quickstart's 35 epochs of 120 videos (4,200 clips):
# 2,100 iterations of two clips, one video and one image clip (lr x0.1 after
# 80 %, as the quickstart).
_base_ = './ttsrn_synthetic.py'

num_frames = _base_.num_frames
image_root = 'data/synthetic_coco/'

pseudo_video_pipeline = [
    dict(type='ClipFrameSample', num_frames=num_frames),
    dict(
        type='TransformBroadcaster',
        share_random_params=True,
        transforms=[
            dict(type='LoadVideoFrame', backend_args=_base_.backend_args),
            dict(type='LoadTrackAnnotations', with_mask=True),
            dict(type='RandomFrameAffine'),
            dict(type='Resize', scale=_base_.img_scale, keep_ratio=False),
            dict(type='RandomFlip', prob=0.5),
        ]),
    dict(type='PackTrackInputs')
]
train_dataloader = dict(
    sampler=dict(
        _delete_=True,
        type='MultiSourceSampler',
        batch_size=2,
        source_ratio=[1, 1],
        shuffle=True),
    batch_sampler=None,
    dataset=dict(
        _delete_=True,
        # As in ttsrn_yvis_coco_joint.py: checks that the classes match.
        type='mmengine.ConcatDataset',
        ignore_keys=['cat_ids', 'dataset_version', 'has_annotations'],
        datasets=[
            _base_.train_dataloader.dataset,
            dict(
                type='ImagePseudoVideoDataset',
                data_root=image_root,
                ann_file='annotations/instances_train.json',
                data_prefix=dict(img_path=''),
                num_frames=num_frames,
                filter_cfg=dict(filter_empty_gt=True),
                pipeline=pseudo_video_pipeline)
        ]))

max_iters = 2100
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[1680],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
