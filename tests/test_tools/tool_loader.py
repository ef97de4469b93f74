"""Import a script of the repository (``tools/``, ``demo/``: no packages)
as a module."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).parents[2]


def load_tool(path: str):
    """The module of the script at ``path`` from the repository root, e.g.
    ``tools/analysis_tools/benchmark.py``."""
    file = ROOT / path
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
