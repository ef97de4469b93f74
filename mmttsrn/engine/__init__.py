# Importing mmttsrn (as configs do through custom_imports) registers the safe
# checkpoint loader, so `load_from` and `--resume` work on torch >= 2.6.
from .checkpoint import (MMENGINE_CHECKPOINT_GLOBALS, load_local_checkpoint,
                         load_pretrained_file)

__all__ = [
    'MMENGINE_CHECKPOINT_GLOBALS', 'load_local_checkpoint',
    'load_pretrained_file'
]
