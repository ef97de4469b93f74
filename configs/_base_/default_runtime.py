custom_imports = dict(imports=['mmttsrn'], allow_failed_imports=False)
default_scope = 'mmdet'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='TrackVisualizationHook', draw=False))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
    # Without a GPU, glibc malloc keeps freed memory for reuse instead of
    # page-faulting it back (mmttsrn.engine.keep_freed_memory) in tests
    # ('test'; True: also in training, up to 1.4x faster at T=8 but the heap
    # keeps its peak, 12.4 instead of 5.7 GiB at T=36; False: never).
    keep_freed_memory='test')

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='TrackInstanceVisualizer',
    vis_backends=vis_backends,
    name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=True)

log_level = 'INFO'
load_from = None
resume = False
