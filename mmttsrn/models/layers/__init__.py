from .convex_upsample import *  # noqa: F401,F403
from .dropout_attention import *  # noqa: F401,F403
from .init_cfg import *  # noqa: F401,F403
from .mask_shape_encoder import *  # noqa: F401,F403
from .positional_encoding import *  # noqa: F401,F403
from .sampled_deform_conv import *  # noqa: F401,F403
from .siren import *  # noqa: F401,F403
from .transformer import *  # noqa: F401,F403
