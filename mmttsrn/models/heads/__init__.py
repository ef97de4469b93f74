from .sequence_mask_head import *  # noqa: F401,F403
from .srn_head import *  # noqa: F401,F403
from .ttsrn_head import *  # noqa: F401,F403
