"""tools/analysis_tools/benchmark.py on the tiny synthetic config (CPU).

Speeds are reported, never asserted: these tests check that every mode runs
and prints complete, consistent records.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from tool_loader import load_tool

ROOT = Path(__file__).parents[2]
CONFIG = str(ROOT / 'configs' / 'ttsrn' / 'ttsrn_synthetic.py')
PEER = 'mmdet::mask2former_vis/mask2former_r50_8xb2-8e_youtubevis2019.py'
TINY = [
    '--frames', '4', '--size', '64', '96', '--repeats', '1', '--warmup', '0',
    '--device', 'cpu'
]


benchmark = load_tool('tools/analysis_tools/benchmark.py')


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: tiny ops on a busy shared machine otherwise wait
    on each other's OpenMP barriers (seconds per clip)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(capsys, *args):
    """Run the CLI in-process; return the JSON lines it printed."""
    benchmark.main([CONFIG, *TINY, *args])
    out = capsys.readouterr().out
    return [
        json.loads(line) for line in out.splitlines() if line.startswith('{')
    ]


def _check(record, mode='predict', dtype='fp32', repeats=1):
    assert record['config'] == CONFIG
    assert record['model'] == 'TTSRN'
    assert record['mode'] == mode
    assert record['dtype'] == dtype
    assert record['compile'] is False and record['compiled'] == []
    assert record['device'] == 'cpu'
    assert record['frames'] == 4 and record['size'] == [64, 96]
    assert len(record['seconds']) == repeats
    assert all(s > 0 for s in record['seconds'])
    assert 0 < record['fps_min'] <= record['frames_per_second'] <= \
        record['fps_max']
    assert record['fps_iqr'] >= 0
    np.testing.assert_allclose(record['seconds_per_clip'],
                               np.median(record['seconds']))
    assert record['peak_memory_mb'] >= 0
    assert record['memory_kind'].startswith('cpu')
    assert record['parameters'] > 0
    assert record['weights_mb'] >= record['parameters'] * 4 / 2**20
    assert record['threads'] == 1
    assert len(record['load_average']) == 3


def test_predict_compare_same_config(capsys):
    records = _run(capsys, '--compare', CONFIG, '--repeats', '2',
                   '--cfg-options', 'model.test_cfg.cuda_graphs=1')
    assert len(records) == 3
    for record in records[:2]:
        _check(record, repeats=2)
    # Each record says what was set for its model only.
    assert records[0]['cfg_options'] == {'model.test_cfg.cuda_graphs': 1}
    assert records[1]['cfg_options'] is None
    # Same config and seed: the same model.
    assert records[0]['parameters'] == records[1]['parameters']
    ratio = records[2]
    assert ratio['compare'] == [CONFIG, CONFIG]
    assert ratio['fps_ratio'] == pytest.approx(
        records[0]['frames_per_second'] / records[1]['frames_per_second'])


def test_keep_freed_memory_is_asked_for_and_recorded(capsys, monkeypatch):
    # Recorded, not applied: the test process keeps its allocator.
    calls = []
    monkeypatch.setattr(benchmark, 'keep_freed_memory',
                        lambda: calls.append(1) or True)
    (record, ) = _run(capsys, '--keep-freed-memory')
    assert calls and record['keep_freed_memory'] is True
    (record, ) = _run(capsys)
    assert len(calls) == 1 and record['keep_freed_memory'] is False
    monkeypatch.setattr(benchmark, 'keep_freed_memory', lambda: False)
    with pytest.raises(RuntimeError, match='glibc'):
        _run(capsys, '--keep-freed-memory')


def test_train_mode_updates_weights():
    args = benchmark.parse_args([CONFIG, *TINY, '--train', '--num-gts', '2'])
    device = torch.device('cpu')
    bench = benchmark.make_bench(CONFIG, None, args, device)
    assert bench.model.training
    before = {k: v.clone() for k, v in bench.model.state_dict().items()}
    meter = benchmark.MemoryMeter(device)
    benchmark.run_once(bench, device, meter, record=True)
    _check(
        benchmark.summary(bench, args, device, meter, (0.0, 0.0, 0.0)),
        mode='train')
    changed = [
        k for k, v in bench.model.state_dict().items()
        if not torch.equal(v, before[k])
    ]
    assert any(k.startswith('track_head.transformer') for k in changed)
    assert any(k.startswith('track_head.mask_head') for k in changed)
    assert any(k.startswith('backbone') for k in changed)


def test_bf16_autocast_on_cpu_and_profile(capsys):
    benchmark.main([CONFIG, *TINY, '--dtype', 'bf16', '--profile', '3'])
    out, err = capsys.readouterr()
    _check(json.loads(out.splitlines()[-1]), dtype='bf16')
    assert f'profile of {CONFIG}' in err
    assert 'Self CPU' in err


def _recording_compile(calls):
    """A stand-in for ``torch.compile`` that counts, per wrapped module, the
    calls of its ``forward`` (what ``torch.compile`` compiles) and passes
    other attributes through, as ``OptimizedModule`` does."""

    class Compiled(torch.nn.Module):

        def __init__(self, module):
            super().__init__()
            self.module = module
            calls[module] = 0

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.module, name)

        def forward(self, *args, **kwargs):
            calls[self.module] += 1
            return self.module(*args, **kwargs)

    return Compiled


@pytest.mark.parametrize('config,expected', [
    (CONFIG, [
        'backbone', 'track_head.transformer.encoder',
        'track_head.transformer.decoder', 'track_head.mask_head'
    ]),
    (PEER, ['backbone', 'track_head.pixel_decoder'] +
     [f'track_head.transformer_decoder.layers.{i}' for i in range(9)]),
])
def test_compile_wraps_modules_that_run(monkeypatch, config, expected):
    """``--compile`` wraps modules whose ``forward`` a predict calls: a
    module reached only through other methods (TT-SRN's clip transformer,
    Mask2Former's transformer decoder) would run uncompiled."""
    calls = {}
    monkeypatch.setattr(torch, 'compile', _recording_compile(calls))
    args = benchmark.parse_args([config, *TINY, '--compile'])
    bench = benchmark.make_bench(config, None, args, torch.device('cpu'))
    # The record says what was compiled.
    assert bench.compiled == expected
    bench.step(bench.new_samples())
    assert all(calls.values()), 'a compiled module never ran'
    assert len(calls) == len(expected)


def test_predict_returns_tracks_for_every_frame():
    args = benchmark.parse_args([CONFIG, *TINY])
    bench = benchmark.make_bench(CONFIG, None, args, torch.device('cpu'))
    assert not bench.model.training
    results = bench.step(bench.new_samples())
    frames = results[0].video_data_samples
    assert len(frames) == 4
    for frame in frames:
        # Masks at the original (unpadded) size.
        assert frame.pred_track_instances.masks.shape[-2:] == (64, 96)


def test_clip_and_samples_are_preprocessed():
    pad = benchmark.padded_size((300, 540), 32)
    assert pad == (320, 544)
    clip = benchmark.make_clip(2, (300, 540), pad, 'cpu', seed=0)
    assert clip.shape == (1, 2, 3, 320, 544)
    assert clip[..., 300:, :].abs().sum() == 0
    assert clip[..., :, 540:].abs().sum() == 0
    assert clip[..., :300, :540].std() > 0.5
    samples = benchmark.make_samples(
        2, (300, 540), pad, 'cpu', num_gts=3, num_classes=2)
    frames = samples[0].video_data_samples
    assert [f.frame_id for f in frames] == [0, 1]
    for frame in frames:
        assert frame.img_shape == frame.ori_shape == (300, 540)
        assert frame.batch_input_shape == frame.pad_shape == (320, 544)
        gts = frame.gt_instances
        assert gts.masks.masks.shape == (3, 320, 544)
        assert gts.instances_ids.tolist() == [0, 1, 2]
        assert gts.labels.max() < 2
        boxes = gts.bboxes
        assert (boxes[:, 2] <= 540).all() and (boxes[:, 3] <= 300).all()
        # Each mask fills its box.
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        assert gts.masks.areas.tolist() == areas.tolist()


def test_peer_config_loads_without_downloads():
    cfg = benchmark.load_config(PEER)
    assert cfg.model.type == 'Mask2FormerVideo'
    assert 'http' in cfg.model.init_cfg.checkpoint
    model_cfg = cfg.model.copy()
    benchmark.strip_pretrained(model_cfg)
    text = str(model_cfg)
    assert 'Pretrained' not in text
    assert 'torchvision://' not in text and 'http' not in text
    # Non-loading inits are kept.
    nested = dict(
        init_cfg=[
            dict(type='Kaiming', layer='Conv2d'),
            dict(type='Pretrained', checkpoint='a.pth')
        ],
        pretrained='b.pth')
    benchmark.strip_pretrained(nested)
    assert nested == dict(
        init_cfg=[dict(type='Kaiming', layer='Conv2d')], pretrained=None)


def test_cpu_memory_meter_sees_an_allocation():
    meter = benchmark.MemoryMeter(torch.device('cpu'))
    meter.start()
    block = torch.ones(64, 2**20 // 4 * 4)  # 256 MiB, touched
    peak = meter.peak_mb()
    del block
    assert peak > 200
    if meter.kind == 'cpu_peak_rss_delta':
        # The peak is reset by start(): the block no longer counts.
        meter.start()
        assert meter.peak_mb() < 200


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_bf16(capsys):
    benchmark.main([CONFIG, *TINY[:-2], '--device', 'cuda', '--dtype', 'bf16'])
    record = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert record['memory_kind'] == 'cuda_max_memory_allocated_delta'
    assert record['peak_memory_mb'] > 0


def test_bad_arguments():
    with pytest.raises(SystemExit):
        benchmark.parse_args([CONFIG, '--repeats', '0'])
    with pytest.raises(SystemExit):
        benchmark.parse_args([CONFIG, '--dtype', 'fp8'])
    with pytest.raises(FileNotFoundError, match='no_such.py'):
        benchmark.load_config('configs/no_such.py')


def _gpu_benchmark(tmp_path, runs):
    return subprocess.run(
        ['bash', 'tools/analysis_tools/gpu_benchmark.sh',
         str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        # `echo` stands in for Python: the runs' command lines are logged.
        env={**os.environ, 'RUNS': runs, 'PYTHON': 'echo'},
        timeout=60)


def test_gpu_benchmark_script_does_the_runs_asked_for(tmp_path):
    proc = _gpu_benchmark(tmp_path, 'train_bf16 predict_fp32')
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.glob('*.log')) == [
        'predict_fp32.log', 'train_bf16.log'
    ]
    train = (tmp_path / 'train_bf16.log').read_text().split()
    assert {'--train', 'bf16', 'model.backbone.with_cp=True'} <= set(train)
    assert 'bf16' not in (tmp_path / 'predict_fp32.log').read_text()


def test_gpu_benchmark_script_refuses_an_unknown_run(tmp_path):
    proc = _gpu_benchmark(tmp_path / 'out', 'predict_bf16 predict_bf61')
    assert proc.returncode == 2
    assert "no run named 'predict_bf61'" in proc.stderr
    assert not (tmp_path / 'out').exists()


def test_gpu_benchmark_graph_runs_set_cuda_graphs_for_ttsrn_only(tmp_path):
    proc = _gpu_benchmark(tmp_path, 'predict_bf16_compile_graph')
    assert proc.returncode == 0, proc.stderr
    line = (tmp_path / 'predict_bf16_compile_graph.log').read_text().split()
    assert {'--compile', 'bf16', 'model.test_cfg.cuda_graphs=1'} <= set(line)
    assert '--compare-cfg-options' not in line


def test_gpu_benchmark_script_does_every_run_by_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'RUNS'}
    proc = subprocess.run(
        ['bash', 'tools/analysis_tools/gpu_benchmark.sh',
         str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**env, 'PYTHON': 'echo'},
        timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(list(tmp_path.glob('*.log'))) == 12


@pytest.mark.parametrize('impl', ['compiled', 'triton'])
def test_gpu_benchmark_deform_runs(tmp_path, impl):
    """The compiled and Triton deformable conv runs set both TT-SRN
    options; the Triton one also runs with --compile."""
    name = f'predict_bf16_graph_{impl}_deform'
    compiled_name = f'predict_bf16_compile_graph_{impl}_deform'
    runs = name + (' ' + compiled_name if impl == 'triton' else '')
    proc = _gpu_benchmark(tmp_path, runs)
    assert proc.returncode == 0, proc.stderr
    options = {
        'bf16', 'model.test_cfg.cuda_graphs=1',
        f'model.track_head.mask_head.cuda_deform={impl}'
    }
    args = (tmp_path / f'{name}.log').read_text().split()
    assert options <= set(args)
    assert '--compile' not in args
    if impl == 'triton':
        args = (tmp_path / f'{compiled_name}.log').read_text().split()
        assert options | {'--compile'} <= set(args)
