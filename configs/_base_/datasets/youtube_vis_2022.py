# YouTube-VIS 2022: the 2021 training set (40 classes) and new valid/test
# splits that add long videos. Same format and settings as
# youtube_vis_2021.py; see docs/dataset_prepare.md for where the files go.
#
# Layout under data_root:
#   train/JPEGImages/<video>/...   (the 2021 train split; link it)
#   valid/JPEGImages/<video>/...   (2022 valid, short and long videos)
#   annotations/train_sub.json, annotations/val_sub.json  (split of 2021's
#     train instances.json, see youtube_vis_2019.py)
#   annotations/valid.json         (the 2022 valid instances.json)
# A long test video runs in overlapping windows of the clip length.
_base_ = './youtube_vis_2021.py'

data_root = 'data/youtube_vis_2022/'
dataset_version = '2022'

train_dataloader = dict(
    dataset=dict(data_root=data_root, dataset_version=dataset_version))
val_dataloader = dict(
    dataset=dict(data_root=data_root, dataset_version=dataset_version))
test_dataloader = dict(
    dataset=dict(data_root=data_root, dataset_version=dataset_version))
