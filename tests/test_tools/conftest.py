"""Fixtures of the tools' tests."""
import json

import pytest
from mask_folder_utils import CATEGORIES, write_mask_folder


@pytest.fixture
def mask_folder(tmp_path):
    """(root, categories file, id maps) of a 3-video DAVIS-style folder."""
    root = tmp_path / 'my_vis'
    id_maps = write_mask_folder(root)
    categories = root / 'categories.json'
    categories.write_text(json.dumps(CATEGORIES))
    return root, categories, id_maps
