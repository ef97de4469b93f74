from .collect_env import collect_env
from .config import load_tool_config, sync_num_frames
from .mask_rle import encode_masks

__all__ = [
    'collect_env', 'encode_masks', 'load_tool_config', 'sync_num_frames'
]
