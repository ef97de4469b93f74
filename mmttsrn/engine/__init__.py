from .checkpoint import (MMENGINE_CHECKPOINT_GLOBALS, UnsafeCheckpointError,
                         check_checkpoint_file, load_local_checkpoint,
                         load_pretrained_file)
from .collapse_stats import attention_entropy, relative_spread, token_spread
from .hooks import CollapseMonitorHook
from .malloc import keep_freed_memory
from .runner import TTSRNRunner, die_with_parent

__all__ = [
    'CollapseMonitorHook', 'attention_entropy', 'relative_spread',
    'token_spread',
    'MMENGINE_CHECKPOINT_GLOBALS', 'TTSRNRunner', 'UnsafeCheckpointError',
    'check_checkpoint_file', 'die_with_parent', 'keep_freed_memory',
    'load_local_checkpoint', 'load_pretrained_file'
]
