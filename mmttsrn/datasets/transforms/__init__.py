from .clip_sampling import *  # noqa: F401,F403
from .loading import *  # noqa: F401,F403
from .pseudo_video import *  # noqa: F401,F403
