# Ablation: fewer frames per clip (T=18 instead of 36); longer videos run in
# overlapping windows at test time.
_base_ = './ttsrn_yvis.py'
num_frames = 18
model = dict(track_head=dict(num_frames=num_frames))
train_pipeline = [
    dict(type='ClipFrameSample', num_frames=num_frames),
    *_base_.train_pipeline[1:]
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
