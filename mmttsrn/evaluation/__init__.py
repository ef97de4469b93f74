from .youtube_vis_metric import *  # noqa: F401,F403
