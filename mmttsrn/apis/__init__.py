from .inference import *  # noqa: F401,F403
