from . import backbones, heads, layers, task_modules, vis  # noqa: F401
