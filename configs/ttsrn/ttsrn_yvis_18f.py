# Ablation: fewer frames per clip (T=18 instead of 36); longer videos run in
# overlapping windows at test time.
_base_ = './ttsrn_yvis.py'
num_frames = 18
model = dict(track_head=dict(num_frames=num_frames))
# The YouTube-VIS 2019 train pipeline with clips of num_frames frames.
train_pipeline = [
    dict(type='ClipFrameSample', num_frames=num_frames),
    dict(
        type='TransformBroadcaster',
        share_random_params=True,
        transforms=[
            dict(type='LoadVideoFrame', backend_args=_base_.backend_args),
            dict(type='LoadTrackAnnotations', with_mask=True),
            dict(type='Resize', scale=_base_.img_scale, keep_ratio=False),
            dict(type='RandomFlip', prob=0.5),
        ]),
    dict(type='PackTrackInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
