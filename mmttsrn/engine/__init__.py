from .checkpoint import (MMENGINE_CHECKPOINT_GLOBALS, UnsafeCheckpointError,
                         check_checkpoint_file, load_local_checkpoint,
                         load_pretrained_file)

__all__ = [
    'MMENGINE_CHECKPOINT_GLOBALS', 'UnsafeCheckpointError',
    'check_checkpoint_file', 'load_local_checkpoint', 'load_pretrained_file'
]
