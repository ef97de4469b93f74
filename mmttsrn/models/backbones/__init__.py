from .twins import *  # noqa: F401,F403
