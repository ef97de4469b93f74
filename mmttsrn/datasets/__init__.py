from . import transforms  # noqa: F401
from .image_pseudo_video import *  # noqa: F401,F403
from .synthetic import *  # noqa: F401,F403
from .synthetic_images import *  # noqa: F401,F403
from .youtube_vis import *  # noqa: F401,F403
