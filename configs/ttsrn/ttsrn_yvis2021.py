# TT-SRN on YouTube-VIS 2021 (40 classes, longer videos: a test video longer
# than the 36-frame clip runs in overlapping windows joined by mask IoU).
_base_ = [
    '../_base_/models/ttsrn_twins.py',
    '../_base_/datasets/youtube_vis_2021.py',
    '../_base_/schedules/schedule_18e.py', '../_base_/default_runtime.py'
]
