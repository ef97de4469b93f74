# YouTube-VIS 2021: same layout and settings as youtube_vis_2019.py (read it
# for the split tool, the variables and how to switch the test split).
# Its videos are longer than 36 frames: training samples a random clip, and a
# test sample (a whole video) is run by the model in windows.
_base_ = './youtube_vis_2019.py'

data_root = 'data/youtube_vis_2021/'
dataset_version = '2021'

train_dataloader = dict(
    dataset=dict(data_root=data_root, dataset_version=dataset_version))
val_dataloader = dict(
    dataset=dict(data_root=data_root, dataset_version=dataset_version))
test_dataloader = dict(
    dataset=dict(data_root=data_root, dataset_version=dataset_version))
