"""tools/analysis_tools/get_flops.py on the small synthetic model."""
from pathlib import Path

import pytest
from tool_loader import load_tool

ROOT = Path(__file__).parents[2]
CONFIG = str(ROOT / 'configs' / 'ttsrn' / 'ttsrn_synthetic.py')
get_flops = load_tool('tools/analysis_tools/get_flops.py')


def _count(text, label):
    """The integer in parentheses after ``label`` in the report."""
    line = next(line for line in text.splitlines() if line.startswith(label))
    return int(line.split('(')[1].split()[0].rstrip(')').replace(',', ''))


def test_prints_params_and_flops(capsys):
    get_flops.main([CONFIG, '--frames', '4', '--size', '40', '60'])
    out = capsys.readouterr().out
    assert 'Clip: 4 frames of 40 x 60 (padded to 64 x 64)' in out
    from mmttsrn.apis import init_model
    model = init_model(CONFIG)
    params = sum(p.numel() for p in model.parameters())
    assert _count(out, 'Params:') == params
    small = _count(out, 'FLOPs:')
    assert small > 0
    assert 'attention' in out and 'Not counted' in out

    # A larger frame costs more.
    get_flops.main([CONFIG, '--size', '96', '128'])
    assert _count(capsys.readouterr().out, 'FLOPs:') > small


def test_attention_handle_counts_both_products():

    class Value:

        def __init__(self, shape):
            self.shape = shape

        def isCompleteTensor(self):
            return True

        def type(self):
            return self

        def sizes(self):
            return self.shape

    q, k, v = Value([2, 4, 10, 8]), Value([2, 4, 30, 8]), Value([2, 4, 30, 6])
    # QK^T: 2*4*10*30*8, AV: 2*4*10*30*6
    assert get_flops.sdpa_flop_jit([q, k, v], []) == 2 * 4 * 10 * 30 * 14


def test_frames_must_match_the_model():
    with pytest.raises(ValueError, match='4 frames'):
        get_flops.main([CONFIG, '--frames', '3', '--size', '32', '32'])
