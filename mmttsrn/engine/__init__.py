from .checkpoint import (MMENGINE_CHECKPOINT_GLOBALS,
                         allow_mmengine_checkpoints)

# Importing mmttsrn (as configs do through custom_imports) is enough to make
# `load_from` and `--resume` work with torch's safe loader.
allow_mmengine_checkpoints()

__all__ = ['MMENGINE_CHECKPOINT_GLOBALS', 'allow_mmengine_checkpoints']
