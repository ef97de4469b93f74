# TT-SRN, the paper's full model on YouTube-VIS 2019: Twins-SVT, T=36 frames of
# 300x540 (the longest annotated video, so a video is one clip), 10 instances
# per frame (360 queries), 18 epochs.
_base_ = [
    '../_base_/models/ttsrn_twins.py',
    '../_base_/datasets/youtube_vis_2019.py',
    '../_base_/schedules/schedule_18e.py', '../_base_/default_runtime.py'
]
# Less training memory with the same losses and gradients (activation
# checkpointing of the backbone's attention blocks and of the encoder layers;
# docs/benchmark.md, "Training memory"):
# model = dict(
#     backbone=dict(with_cp=True),
#     track_head=dict(transformer=dict(with_cp=True)))
