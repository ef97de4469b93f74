from .sequence_match_costs import *  # noqa: F401,F403
from .sequence_matcher import *  # noqa: F401,F403
from .window_linker import *  # noqa: F401,F403
