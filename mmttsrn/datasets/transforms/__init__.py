from .clip_sampling import *  # noqa: F401,F403
from .loading import *  # noqa: F401,F403
