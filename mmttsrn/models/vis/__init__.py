from .ttsrn import *  # noqa: F401,F403
