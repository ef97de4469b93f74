# TT-SRN on YouTube-VIS 2022 (trained on the 2021 train split, 40 classes;
# long valid videos run in overlapping windows joined by mask IoU).
_base_ = [
    '../_base_/models/ttsrn_twins.py',
    '../_base_/datasets/youtube_vis_2022.py',
    '../_base_/schedules/schedule_18e.py', '../_base_/default_runtime.py'
]
