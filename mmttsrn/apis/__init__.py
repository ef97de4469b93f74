from .inference import *  # noqa: F401,F403
from .onnx_inference import *  # noqa: F401,F403
