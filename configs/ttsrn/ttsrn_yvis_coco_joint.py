# TT-SRN on YouTube-VIS 2019 trained jointly with COCO images turned into
# pseudo-videos (SeqFormer / VITA / IDOL style): each COCO image becomes a
# clip of T copies, and RandomFrameAffine moves, scales and crops each copy
# differently, so its instances move (or leave the view) across the clip.
# COCO categories are mapped onto YouTube-VIS ones; the others are dropped.
#
# COCO goes under data/coco/ (train2017/*.jpg,
# annotations/instances_train2017.json); YouTube-VIS as in
# youtube_vis_2019.py.
#
# Mixing: mmengine's ConcatDataset holds both datasets and mmdet's
# MultiSourceSampler draws from them at `source_ratio`. The sampler's
# batch_size is the length of the cycle in which the ratio is exact, not the
# dataloader's batch (which stays 1 clip per GPU, as in the paper): with
# source_ratio=[1, 1] and a cycle of 2, video and COCO clips alternate.
# The sampler is infinite, hence the iteration-based loop.
_base_ = './ttsrn_yvis.py'

num_frames = _base_.num_frames
coco_root = 'data/coco/'

# YouTube-VIS 2019's categories (ids 1..40 of its train.json), in id order:
# the pseudo-videos must carry the same classes as the videos (ConcatDataset
# checks that they do).
yvis_classes = (
    'person', 'giant_panda', 'lizard', 'parrot', 'skateboard', 'sedan', 'ape',
    'dog', 'snake', 'monkey', 'hand', 'rabbit', 'duck', 'cat', 'cow', 'fish',
    'train', 'horse', 'turtle', 'bear', 'motorbike', 'giraffe', 'leopard',
    'fox', 'deer', 'owl', 'surfboard', 'airplane', 'truck', 'zebra', 'tiger',
    'elephant', 'snowboard', 'boat', 'shark', 'mouse', 'frog', 'eagle',
    'earless_seal', 'tennis_racket')
# COCO category id -> YouTube-VIS 2019 class (the map of SeqFormer, VITA and
# IDOL); the other COCO categories are dropped.
coco_to_yvis = {
    1: 'person', 2: 'motorbike', 3: 'sedan', 4: 'motorbike', 5: 'airplane',
    7: 'train', 8: 'truck', 9: 'boat', 17: 'cat', 18: 'dog', 19: 'horse',
    21: 'cow', 22: 'elephant', 23: 'bear', 24: 'zebra', 25: 'giraffe',
    35: 'snowboard', 36: 'snowboard', 41: 'skateboard', 42: 'surfboard',
    43: 'tennis_racket'
}

# The video train pipeline with a per-frame RandomFrameAffine after loading.
pseudo_video_pipeline = [
    dict(type='ClipFrameSample', num_frames=num_frames),
    dict(
        type='TransformBroadcaster',
        share_random_params=True,
        transforms=[
            dict(type='LoadVideoFrame', backend_args=_base_.backend_args),
            dict(type='LoadTrackAnnotations', with_mask=True),
            dict(
                type='RandomFrameAffine',
                scale_range=(0.8, 1.25),
                max_rotate_degree=10,
                max_translate_ratio=0.15),
            dict(type='Resize', scale=_base_.img_scale, keep_ratio=False),
            dict(type='RandomFlip', prob=0.5),
        ]),
    dict(type='PackTrackInputs')
]
coco_pseudo_video = dict(
    type='ImagePseudoVideoDataset',
    data_root=coco_root,
    ann_file='annotations/instances_train2017.json',
    data_prefix=dict(img_path=''),
    num_frames=num_frames,
    category_map=coco_to_yvis,
    metainfo=dict(classes=yvis_classes),
    filter_cfg=dict(filter_empty_gt=True),
    pipeline=pseudo_video_pipeline,
    backend_args=_base_.backend_args)

train_dataloader = dict(
    batch_size=1,
    sampler=dict(
        _delete_=True,
        type='MultiSourceSampler',
        batch_size=2,
        source_ratio=[1, 1],
        shuffle=True),
    # TrackAspectRatioBatchSampler would regroup the clips and break the
    # ratio; every clip is resized to one size anyway.
    batch_sampler=None,
    dataset=dict(
        _delete_=True,
        # mmengine's ConcatDataset checks that both datasets have the same
        # classes (mmdet's would silently give a list of metainfos); only
        # the video dataset knows its file's category ids and version.
        type='mmengine.ConcatDataset',
        ignore_keys=['cat_ids', 'dataset_version', 'has_annotations'],
        datasets=[_base_.train_dataloader.dataset, coco_pseudo_video]))

# The 18-epoch video recipe on 8 GPUs is ~4.5k iterations of 1 clip per GPU;
# at a 1:1 ratio, 9k iterations show the videos as often, with as many COCO
# clips on top. lr x0.1 after two thirds, as in the video recipe.
max_iters = 9000
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=1500)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[6000],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=1500))
log_processor = dict(by_epoch=False)
