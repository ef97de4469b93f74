# Ablation: DETR/VisTR-style MLP class and box heads instead of the SRN heads.
_base_ = './ttsrn_yvis.py'
model = dict(
    track_head=dict(
        cls_head=dict(
            _delete_=True, type='MLPHead', hidden_channels=384,
            num_layers=1),
        reg_head=dict(
            _delete_=True, type='MLPHead', hidden_channels=384,
            num_layers=3)))
