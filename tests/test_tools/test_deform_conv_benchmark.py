"""tools/analysis_tools/deform_conv_benchmark.py on the CPU (its GPU ways
need a GPU)."""
import pytest
import torch
from tool_loader import load_tool
from torchvision.ops import deform_conv2d

bench = load_tool('tools/analysis_tools/deform_conv_benchmark.py')
TINY = ['--batch', '2', '--size', '6', '9', '--channels', '5', '3',
        '--warmup', '1', '--repeats', '2']


def test_records_every_way_and_dtype_against_torchvision(capsys):
    records = bench.main(TINY)
    assert [(r['way'], r['dtype']) for r in records] == [
        ('torchvision', 'fp32'), ('sampled', 'fp32'), ('torchvision', 'bf16'),
        ('sampled', 'bf16')
    ]
    assert len(capsys.readouterr().out.strip().splitlines()) == 4
    for record in records:
        assert record['ms'] > 0 and record['shape'] == [2, 5, 6, 9, 3]
        # float32 to rounding; bf16 inputs and output to bf16's precision.
        limit = 1e-5 if record['dtype'] == 'fp32' else 2e-2
        assert record['max_rel_diff'] <= limit, record
        assert record['out_dtype'] == dict(
            fp32='float32', bf16='bfloat16')[record['dtype']]


def test_gpu_ways_are_refused_on_the_cpu():
    with pytest.raises(SystemExit, match='triton'):
        bench.main(TINY + ['--ways', 'triton'])


def test_a_way_that_fails_is_recorded_and_the_next_runs(monkeypatch):
    conv = bench._conv

    def failing(way):
        if way == 'torchvision':
            raise RuntimeError('no kernel image')
        return conv(way)

    monkeypatch.setattr(bench, '_conv', failing)
    records = bench.main(TINY + ['--dtypes', 'fp32'])
    assert records[0]['error'] == 'RuntimeError: no kernel image'
    assert 'ms' not in records[0]
    assert records[1]['way'] == 'sampled' and records[1]['ms'] > 0


def test_kernel_ways_time_the_kernel_on_each_layout(monkeypatch):
    # The kernel's two ways reach it with x in their layout (made before
    # the timing); a stand-in records it, as a CPU cannot launch it.
    kernel = pytest.importorskip('mmttsrn.models.layers.deform_conv_kernel')
    layouts = []

    def fake(x, offset, weight, bias, padding, dilation, tf32):
        layouts.append(x.is_contiguous(memory_format=torch.channels_last))
        return deform_conv2d(x, offset, weight, bias, padding=padding)

    monkeypatch.setattr(kernel, 'fused_deform_conv2d', fake)
    monkeypatch.setattr(bench, 'CPU_WAYS', tuple(bench.KERNEL_WAYS))
    records = bench.main(TINY + ['--dtypes', 'fp32'])
    assert [r['way'] for r in records] == ['triton_nchw', 'triton_cl']
    assert all(r['max_rel_diff'] <= 1e-5 for r in records)
    calls = 1 + 2  # warm-up and repeats of TINY
    assert layouts == [False] * calls + [True] * calls
