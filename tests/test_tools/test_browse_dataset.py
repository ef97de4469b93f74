"""tools/analysis_tools/browse_dataset.py on a tiny synthetic dataset."""
from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData
from tool_loader import load_tool

from mmttsrn.visualization import TrackInstanceVisualizer, instance_color

ROOT = Path(__file__).parents[2]
CONFIG = str(ROOT / 'configs' / 'ttsrn' / 'ttsrn_synthetic.py')
browse_dataset = load_tool('tools/analysis_tools/browse_dataset.py')


@pytest.mark.parametrize('phase', ['train', 'val'])
def test_writes_one_png_per_clip(synthetic_root, tmp_path, phase):
    out = tmp_path / 'browse'
    browse_dataset.main([
        CONFIG, '--output-dir',
        str(out), '--not-show', '--phase', phase, '--num', '5', '--cols', '2',
        '--cfg-options', f'{phase}_dataloader.dataset.data_root='
        f'{synthetic_root}'
    ])
    pngs = sorted(out.glob('*.png'))
    # 8 train / 3 valid videos: --num is capped by the dataset size.
    assert len(pngs) == (5 if phase == 'train' else 3)
    for png in pngs:
        assert png.name.startswith(f'{phase}_')
        grid = mmcv.imread(str(png))
        if phase == 'train':
            # 4 sampled frames resized to 128 x 96, 2 per row.
            assert grid.shape == (2 * 96, 2 * 128, 3)
        else:
            # Whole videos at their original size (32-64 px).
            assert 2 * 32 <= grid.shape[1] <= 2 * 64
        # Something is drawn in colour on top of the frames.
        assert grid.std() > 0


def test_instance_colour_is_stable_and_id_based():
    assert instance_color(3) == instance_color(3)
    assert len({instance_color(i) for i in range(20)}) == 20


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.py'):
        browse_dataset.main([str(tmp_path / 'missing.py'), '--not-show'])
    with pytest.raises(ValueError, match='--output-dir'):
        browse_dataset.main([CONFIG, '--not-show'])


def test_draws_gt_masks_in_the_instance_colour():
    mask = np.zeros((1, 30, 40), np.uint8)
    mask[0, 5:25, 5:35] = 1
    gt = InstanceData(
        bboxes=torch.tensor([[5., 5., 35., 25.]]),
        labels=torch.tensor([1]),
        instances_ids=torch.tensor([7]),
        masks=BitmapMasks(mask, 30, 40))
    visualizer = TrackInstanceVisualizer(name='test_gt', alpha=1.0)
    visualizer.dataset_meta = dict(classes=('a', 'b'))
    drawn = visualizer._draw_instances(np.zeros((30, 40, 3), np.uint8), gt)
    # The mask's interior (away from box, outline and text) has the colour.
    assert tuple(drawn[20, 20]) == instance_color(7)
    assert tuple(drawn[28, 38]) == (0, 0, 0)
