# OVIS (Occluded Video Instance Segmentation): 25 categories, long videos with
# heavy occlusion, in the YouTube-VIS JSON format (read by the same dataset).
#
# Layout under data_root (see docs/dataset_prepare.md):
#   train/<video>/img_0000001.jpg ...      valid/<video>/...   test/<video>/...
#   annotations/annotations_train.json     (annotated)
#   annotations/annotations_valid.json     ("annotations": null: the server's)
#   annotations/annotations_test.json
#   annotations/train_sub.json, annotations/val_sub.json  (local split) made by
#     python tools/dataset_converters/split_youtube_vis.py \
#         data/ovis/annotations/annotations_train.json --val-ratio 0.1
#
# Like youtube_vis_2019.py: train on train_sub.json, validate (AP) on
# val_sub.json, test on the official valid split in server format. Its
# variables (num_frames, img_scale, backend_args) work the same way; a test
# video longer than the clip runs in windows.
_base_ = './youtube_vis_2019.py'

data_root = 'data/ovis/'
dataset_version = 'ovis'

train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        dataset_version=dataset_version,
        data_prefix=dict(img_path='train')))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        dataset_version=dataset_version,
        data_prefix=dict(img_path='train')))
test_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        dataset_version=dataset_version,
        ann_file='annotations/annotations_valid.json',
        data_prefix=dict(img_path='valid')))
