"""The tiny TTSRNHead config the model tests share (importable because
pytest puts ``tests/`` on the path for its root conftest)."""


def tiny_head_cfg(num_classes=2,
                  num_frames=2,
                  num_queries=2,
                  num_decoder_layers=2,
                  conv3d_channels=(4, ),
                  pixel_embed=False,
                  **kwargs):
    """A ``TTSRNHead`` config for backbone widths (8, 16, 32, 64), d=48;
    ``kwargs`` replace top-level keys."""
    cfg = dict(
        type='TTSRNHead',
        num_classes=num_classes,
        num_frames=num_frames,
        num_queries=num_queries,
        in_channels=[8, 16, 32, 64],
        embed_dims=48,
        transformer=dict(
            type='ClipTransformer',
            num_heads=4,
            num_encoder_layers=1,
            num_decoder_layers=num_decoder_layers,
            feedforward_channels=64),
        mask_head=dict(
            type='SequenceMaskHead',
            num_heads=4,
            num_groups=1,
            conv3d_channels=conv3d_channels,
            conv3d_groups=2,
            pixel_embed=pixel_embed))
    cfg.update(kwargs)
    return cfg
