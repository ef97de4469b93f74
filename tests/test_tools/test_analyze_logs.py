"""tools/analysis_tools/analyze_logs.py on a fake mmengine scalar log."""
import importlib.util
import json
from pathlib import Path

import mmcv
import pytest

ROOT = Path(__file__).parents[2]
spec = importlib.util.spec_from_file_location(
    'analyze_logs', ROOT / 'tools' / 'analysis_tools' / 'analyze_logs.py')
analyze_logs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(analyze_logs)


@pytest.fixture
def work_dir(tmp_path):
    """A work dir with two runs; the newer one has 2 epochs of 3 iters."""
    lines, step = [], 0
    for epoch in (1, 2):
        for _ in range(3):
            step += 1
            lines.append(
                dict(
                    lr=1e-4,
                    data_time=0.1,
                    loss=4.0 / step,
                    loss_cls=1.0 / step,
                    time=0.5,
                    epoch=epoch,
                    iter=step,
                    memory=10,
                    step=step))
        lines.append({
            'youtube_vis/segm_mAP': 0.1 * epoch,
            'youtube_vis/segm_mAP_50': 0.2 * epoch,
            'data_time': 0.1,
            'time': 0.2,
            'step': epoch
        })
    for run, records in (('20240101_000000', lines[:2]), ('20240102_000000',
                                                          lines)):
        log = tmp_path / run / 'vis_data' / 'scalars.json'
        log.parent.mkdir(parents=True)
        log.write_text(''.join(json.dumps(r) + '\n' for r in records))
    return tmp_path


def test_split_train_and_val_lines(work_dir):
    log = analyze_logs.find_log(str(work_dir))
    assert '20240102_000000' in log
    data = analyze_logs.load_log(log)
    assert len(data['train']) == 6 and len(data['val']) == 2
    steps, values = analyze_logs.curve(data['val'], 'youtube_vis/segm_mAP')
    assert steps == (1, 2) and values == pytest.approx((0.1, 0.2))
    steps, values = analyze_logs.curve(data['train'], 'loss')
    assert steps == tuple(range(1, 7))


def test_plot_curve_writes_png(work_dir, tmp_path, capsys):
    out = tmp_path / 'curves.png'
    analyze_logs.main([
        'plot_curve',
        str(work_dir), '--keys', 'loss', 'loss_cls', 'youtube_vis/segm_mAP',
        '--out',
        str(out)
    ])
    img = mmcv.imread(str(out))
    # Two panels (train and val) stacked: 8 x 8 inches at 100 dpi.
    assert img.shape == (800, 800, 3)
    assert 'saved' in capsys.readouterr().out


def test_plot_two_logs_from_json_files(work_dir, tmp_path):
    logs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    out = tmp_path / 'two.png'
    analyze_logs.main([
        'plot_curve', *map(str, logs), '--keys', 'loss', '--legend', 'first',
        'second', '--out',
        str(out)
    ])
    assert mmcv.imread(str(out)).shape == (400, 800, 3)


def test_errors(work_dir, tmp_path):
    with pytest.raises(KeyError, match="'nope'.*available.*loss_cls"):
        analyze_logs.main([
            'plot_curve',
            str(work_dir), '--keys', 'nope', '--out',
            str(tmp_path / 'x.png')
        ])
    with pytest.raises(FileNotFoundError, match='nowhere does not exist'):
        analyze_logs.main(
            ['plot_curve',
             str(tmp_path / 'nowhere'), '--out', 'x.png'])
    (tmp_path / 'empty_run').mkdir()
    with pytest.raises(FileNotFoundError, match='no vis_data/scalars.json'):
        analyze_logs.main(
            ['plot_curve',
             str(tmp_path / 'empty_run'), '--out', 'x.png'])
    bad = tmp_path / 'bad.json'
    bad.write_text('{"loss": 1}\n')
    with pytest.raises(ValueError, match='bad.json line 1'):
        analyze_logs.main(['plot_curve', str(bad), '--out', 'x.png'])
