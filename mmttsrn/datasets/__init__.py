from . import transforms  # noqa: F401
from .synthetic import *  # noqa: F401,F403
from .youtube_vis import *  # noqa: F401,F403
