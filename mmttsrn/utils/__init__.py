from .collect_env import collect_env
from .config import load_tool_config, sync_num_frames

__all__ = ['collect_env', 'load_tool_config', 'sync_num_frames']
