# The synthetic YouTube-VIS-format dataset (4 shape categories, 64-128 px
# frames, 4-12 frames per video), made by
#   python tools/dataset_converters/make_synthetic_vis.py \
#       --out data/synthetic_vis --num-train 40 --num-val 10 --seed 0
# Same pipelines as YouTube-VIS 2019 (see youtube_vis_2019.py for the
# variables), smaller clips and frames; train on train.json, validate and test
# with AP on the annotated valid.json (valid_unannotated.json mimics the
# server split, for a format-only test).
_base_ = './youtube_vis_2019.py'

data_root = 'data/synthetic_vis/'
dataset_version = None
num_frames = 4
img_scale = (128, 96)

train_pipeline = _base_.train_pipeline
train_pipeline[0].num_frames = num_frames
train_pipeline[1].transforms[2].scale = img_scale
test_pipeline = _base_.test_pipeline
test_pipeline[0].transforms[1].scale = img_scale

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
