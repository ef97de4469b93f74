# Ablation: a VisTR-like ResNet-50 backbone in place of Twins-SVT.
_base_ = './ttsrn_yvis.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        # ImageNet weights from a local file:
        # init_cfg=dict(type='Pretrained', checkpoint='checkpoints/r50.pth')
        init_cfg=None),
    track_head=dict(in_channels=[256, 512, 1024, 2048]))
