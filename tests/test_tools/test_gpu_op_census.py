"""tools/analysis_tools/gpu_op_census.py on the tiny synthetic config: it
runs without a GPU, counts what a change removes, and leaves no global
state behind."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tool_loader import load_tool

import mmttsrn.models.layers.graph_capture as graph_capture

ROOT = Path(__file__).parents[2]
CONFIG = str(ROOT / 'configs' / 'ttsrn' / 'ttsrn_synthetic.py')
TINY = ['--frames', '3', '--size', '64', '96']


census = load_tool('tools/analysis_tools/gpu_op_census.py')


def _run(capsys, *args):
    record = census.main([CONFIG, *TINY, *args])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == record
    return record


@pytest.mark.parametrize('dtype', ['fp32', 'bf16'])
def test_census_record(capsys, dtype):
    sdpa = F.scaled_dot_product_attention
    record = _run(capsys, '--dtype', dtype, '--top', '3')
    assert record['dtype'] == dtype and record['frames'] == 3
    assert record['kernels'] > 100 and record['gb_moved'] > 0
    assert len(record['by_op']) == 3
    ops = {op['op'] for op in record['by_op']}
    assert 'convolution' in ops or 'addmm' in ops
    for kind in ('casts', 'layout_copies'):
        assert len(record[kind]['by_module']) <= 3
        assert record[kind]['count'] >= sum(
            row['count'] for row in record[kind]['by_module'])
    # Autocast casts activations; float32 casts only what is cast by hand
    # (the deformable conv's sampling grid, the pad mask, ...).
    if dtype == 'bf16':
        assert record['casts']['gb'] > 0
    # Nothing is left patched or switched on.
    assert F.scaled_dot_product_attention is sdpa
    assert not graph_capture.is_stream_capturing()
    assert not torch.is_autocast_enabled('cuda')


def test_census_counts_the_float32_copies_of_autocast_norms(capsys):
    kept = _run(capsys)
    off = _run(capsys, '--cfg-options',
               'model.test_cfg.low_precision_norms=False')
    assert kept['casts']['gb'] < off['casts']['gb']
    assert kept['gb_moved'] < off['gb_moved']


@pytest.mark.parametrize('dtype', ['bf16', 'fp32'])
def test_census_counts_graphs_on_parameters_cast_once(capsys, dtype):
    """As ``cuda_graphs`` records them by default: under autocast without
    the kernels that cast parameters (one per parameter and call)."""
    once = _run(capsys, '--dtype', dtype)
    every = _run(capsys, '--dtype', dtype, '--cfg-options',
                 'model.test_cfg.cast_parameters_once=False')
    if dtype == 'fp32':
        assert once['kernels'] == every['kernels']
        return
    saved = every['kernels'] - once['kernels']
    assert saved > 50
    assert every['casts']['count'] - once['casts']['count'] == saved


def test_census_counts_the_triton_deformable_conv_as_one_kernel(capsys):
    """``cuda_deform='triton'`` reaches the GPU forward: the three ops of
    every slice (projection, sampling, tap sum) give way to one op that
    moves less memory."""
    pytest.importorskip('triton')
    three = _run(capsys, '--dtype', 'bf16', '--top', '50')
    fused = _run(capsys, '--dtype', 'bf16', '--top', '50', '--cfg-options',
                 'model.track_head.mask_head.cuda_deform=triton')

    def calls(record, op):
        return sum(row['calls'] for row in record['by_op'] if row['op'] == op)

    for op in ('grid_sampler_2d', 'sum'):
        assert calls(fused, op) < calls(three, op)
    assert calls(fused, 'fused_deform_conv2d') == 1
    assert fused['kernels'] < three['kernels']
    assert fused['gb_moved'] < three['gb_moved']


def test_allocations_and_attention_output_count_as_on_a_gpu():
    """Allocations launch no kernel, and fused attention returns the (B,
    heads, L, E) view of a (B, L, heads, E) tensor as GPU kernels do, so
    transposing the heads back is a view, not a copy."""
    query = torch.randn(2, 3, 5, 4)
    log = census.OpLog([''])
    with log:
        query.new_empty(7)
        out = census.fused_attention(query, query, query)
        merged = out.transpose(1, 2).reshape(2, 5, 12)
    assert out.shape == (2, 3, 5, 4) and merged.shape == (2, 5, 12)
    assert log.kernels == 0 and not log.copies
