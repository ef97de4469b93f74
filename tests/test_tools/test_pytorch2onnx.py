"""tools/deployment/pytorch2onnx.py on a tiny random model."""
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import save_checkpoint
from tool_loader import load_tool

from mmttsrn.apis import init_model

ROOT = Path(__file__).parents[2]
CONFIG = str(ROOT / 'configs' / 'ttsrn' / 'ttsrn_synthetic.py')
pytorch2onnx = load_tool('tools/deployment/pytorch2onnx.py')

# The quickstart model with 2-frame clips and fewer transformer layers, which
# export in about half the time.
TINY = {
    'num_frames': 2,
    'model.track_head.transformer.num_encoder_layers': 1,
    'model.track_head.transformer.num_decoder_layers': 2,
}
TINY_ARGS = ['--cfg-options', *(f'{k}={v}' for k, v in TINY.items())]


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = init_model(CONFIG, cfg_options=TINY)
    path = str(tmp_path_factory.mktemp('ckpt') / 'tiny.pth')
    save_checkpoint(dict(state_dict=model.state_dict()), path)
    return path


@pytest.mark.slow
def test_export_and_verify(checkpoint, tmp_path, capsys):
    out = tmp_path / 'sub' / 'tiny.onnx'
    pytorch2onnx.main([
        CONFIG, checkpoint, '--out',
        str(out), '--size', '50', '70', '--verify', *TINY_ARGS
    ])
    printed = capsys.readouterr().out
    assert out.is_file() and not Path(f'{out}.tmp').exists()
    assert 'clip of 2 frames of 50 x 70 (padded to 64 x 96), opset 19' \
        in printed
    diffs = dict(
        re.findall(r'(cls_scores|bbox_preds|mask_preds) ([0-9.e+-]+)',
                   printed))
    assert set(diffs) == {'cls_scores', 'bbox_preds', 'mask_preds'}
    assert all(float(d) < 1e-3 for d in diffs.values()), diffs
    assert 'verify passed' in printed


def test_verify_above_the_tolerance_exits_non_zero(monkeypatch, checkpoint,
                                                   tmp_path, capsys):
    # The exit path alone: export and comparison are faked.
    monkeypatch.setattr(pytorch2onnx, 'export_onnx',
                        lambda *args: dict(bool_where=0))
    monkeypatch.setattr(
        pytorch2onnx, 'compare_with_pytorch',
        lambda *args: dict(cls_scores=1e-6, bbox_preds=1e-7, mask_preds=0.5))
    with pytest.raises(SystemExit, match='0.5 > tolerance 0.01'):
        pytorch2onnx.main([
            CONFIG, checkpoint, '--out',
            str(tmp_path / 'x.onnx'), '--verify', '--tolerance', '0.01',
            *TINY_ARGS
        ])
    assert 'mask_preds 0.5' in capsys.readouterr().out


def test_missing_files_are_named(tmp_path, checkpoint):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='checkpoint file .*nope.pth'):
        pytorch2onnx.main([CONFIG, missing, '--out', str(tmp_path / 'x.onnx')])
    with pytest.raises(FileNotFoundError, match='config file .*nope.py'):
        pytorch2onnx.main([
            str(tmp_path / 'nope.py'), checkpoint, '--out',
            str(tmp_path / 'x.onnx')
        ])
    assert not (tmp_path / 'x.onnx').exists()


def test_frames_must_match_the_model(checkpoint, tmp_path):
    with pytest.raises(ValueError, match='clips of 2 frames'):
        pytorch2onnx.main([
            CONFIG, checkpoint, '--out',
            str(tmp_path / 'x.onnx'), '--frames', '4', *TINY_ARGS
        ])


def test_size_defaults_to_the_test_resize():
    cfg = Config.fromfile(CONFIG)
    assert pytorch2onnx.frame_size(cfg, None) == (96, 128)
    assert pytorch2onnx.frame_size(cfg, [40, 60]) == (40, 60)
    cfg.test_dataloader.dataset.pipeline = [dict(type='PackTrackInputs')]
    with pytest.raises(ValueError, match='pass --size'):
        pytorch2onnx.frame_size(cfg, None)
