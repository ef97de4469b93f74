"""tools/analysis_tools/analyze_logs.py on a fake mmengine scalar log."""
import json
from pathlib import Path

import mmcv
import pytest
from tool_loader import load_tool

ROOT = Path(__file__).parents[2]
analyze_logs = load_tool('tools/analysis_tools/analyze_logs.py')


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


def _write_log(path, records):
    path.write_text(''.join(json.dumps(r) + '\n' for r in records))
    return str(path)


def test_time_axis_by_hand(tmp_path):
    """2 epochs of 5 iterations, a line every 2 iterations of an epoch; the
    5th iteration of an epoch is not logged (mmengine's ignore_last)."""
    def train(epoch, step, time):
        return dict(
            loss=1.0 / step, time=time, epoch=epoch, iter=step, step=step)

    def val(epoch):
        return {'youtube_vis/segm_mAP': 0.1 * epoch, 'time': 0.7,
                'step': epoch}

    records = [
        train(1, 2, 1.0), train(1, 4, 2.0), val(1),
        train(2, 7, 3.0), train(2, 9, 1.5), val(2)
    ]
    data = analyze_logs.load_log(_write_log(tmp_path / 'e.json', records))
    assert analyze_logs.epoch_length(data['train']) == 5  # 7 - 2
    # Seconds: 2 x 1.0 = 2; + 2 x 2.0 = 6; + 3 x 3.0 = 15; + 2 x 1.5 = 18.
    steps, seconds = analyze_logs.cumulative_time(data['train'])
    assert steps == (2, 4, 7, 9)
    assert seconds == pytest.approx((2, 6, 15, 18))
    minutes, values = analyze_logs.time_curve(data, 'train', 'loss')
    assert minutes == pytest.approx((2 / 60, 6 / 60, 15 / 60, 18 / 60))
    # Epoch 1 ends at iteration 5: 6 + 1 x 3.0 = 9 s; epoch 2 at 10, after
    # the last line: 18 + 1 x 1.5 = 19.5 s.
    minutes, values = analyze_logs.time_curve(data, 'val',
                                              'youtube_vis/segm_mAP')
    assert minutes == pytest.approx((9 / 60, 19.5 / 60))
    assert values == pytest.approx((0.1, 0.2))

    # Iteration-based: lines at 10 and 20, validation at iteration 15.
    records = [
        dict(loss=1.0, time=0.6, iter=10, step=10),
        {'youtube_vis/segm_mAP': 0.3, 'step': 15},
        dict(loss=0.5, time=0.3, iter=20, step=20),
    ]
    data = analyze_logs.load_log(_write_log(tmp_path / 'i.json', records))
    assert analyze_logs.epoch_length(data['train']) is None
    minutes, _ = analyze_logs.time_curve(data, 'train', 'loss')
    assert minutes == pytest.approx((6 / 60, 9 / 60))  # 10 x 0.6, + 10 x 0.3
    minutes, _ = analyze_logs.time_curve(data, 'val', 'youtube_vis/segm_mAP')
    assert minutes == pytest.approx((7.5 / 60, ))  # 6 + 5 x 0.3

    # A resumed run's log (from epoch 2 on) starts at epoch 2's start.
    resumed = [dict(loss=1.0, time=2.0, epoch=e, iter=s, step=s)
               for e, s in ((2, 7), (3, 12))]
    _, seconds = analyze_logs.cumulative_time(resumed)
    assert seconds == pytest.approx((4, 14))  # from iteration 5


def test_plot_against_time(work_dir, tmp_path):
    out = tmp_path / 'time.png'
    logs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    analyze_logs.main([
        'plot_curve',
        str(work_dir),
        str(logs[-1]), '--keys', 'loss', 'youtube_vis/segm_mAP', '--legend',
        'a', 'b', '--x', 'time', '--out',
        str(out)
    ])
    assert mmcv.imread(str(out)).shape == (800, 800, 3)
    # The fixture: 3 iterations of 0.5 s per epoch; epoch 1 ends at 1.5 s.
    data = analyze_logs.load_log(str(logs[-1]))
    minutes, _ = analyze_logs.time_curve(data, 'val', 'youtube_vis/segm_mAP')
    assert minutes == pytest.approx((1.5 / 60, 3.0 / 60))
    no_time = [dict(loss=1.0, iter=1, step=1)]
    with pytest.raises(KeyError, match='no "time"'):
        analyze_logs.main([
            'plot_curve',
            _write_log(tmp_path / 'n.json', no_time), '--x', 'time',
            '--out',
            str(tmp_path / 'n.png')
        ])
