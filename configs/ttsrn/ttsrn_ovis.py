# TT-SRN on OVIS (25 classes, long occluded videos: a test video longer than
# the 36-frame clip runs in overlapping windows joined by mask IoU).
_base_ = [
    '../_base_/models/ttsrn_twins.py', '../_base_/datasets/ovis.py',
    '../_base_/schedules/schedule_18e.py', '../_base_/default_runtime.py'
]
num_classes = 25
# The classification loss's K+1 class weights follow num_classes.
model = dict(track_head=dict(num_classes=num_classes))
