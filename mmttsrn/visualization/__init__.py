from .track_visualizer import *  # noqa: F401,F403
