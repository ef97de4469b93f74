# TT-SRN with the backbone shaped as the official ImageNet Twins-SVT-S (timm
# depths (2, 2, 10, 4): one SSSA module fewer per stage 4 than the paper's
# (2, 2, 10, 8)), so that its ImageNet weights load without missing keys:
#   model = dict(backbone=dict(init_cfg=dict(
#       type='Pretrained', checkpoint='checkpoints/twins_svt_small.pth')))
_base_ = './ttsrn_yvis.py'
model = dict(backbone=dict(depths=(2, 2, 10, 4)))
