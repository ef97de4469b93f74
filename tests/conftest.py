# Tests build components by name the way configs do, in mmdet's scope.
from mmdet.utils import register_all_modules

import mmttsrn  # noqa: F401

register_all_modules(init_default_scope=True)
