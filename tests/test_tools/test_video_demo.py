"""demo/video_demo.py on a few generated frames with random weights."""
from pathlib import Path

import cv2
import mmcv
import numpy as np
import pytest
from tool_loader import load_tool

ROOT = Path(__file__).parents[2]
CONFIG = str(ROOT / 'configs' / 'ttsrn' / 'ttsrn_synthetic.py')


def _load(path):
    return load_tool(str(path.relative_to(ROOT)))


video_demo = _load(ROOT / 'demo' / 'video_demo.py')


def _frames(num, h=40, w=56):
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(num)
    ]


@pytest.fixture
def frame_dir(tmp_path):
    folder = tmp_path / 'frames'
    for i, frame in enumerate(_frames(5)):
        mmcv.imwrite(frame, str(folder / f'{i:05d}.jpg'))
    (folder / 'notes.txt').write_text('not a frame')
    return folder


def test_folder_in_folder_out(frame_dir, tmp_path, capsys):
    out = tmp_path / 'out'
    video_demo.main(
        [str(frame_dir), CONFIG, '--out',
         str(out), '--score-thr', '0.0'])
    written = sorted(p.name for p in out.iterdir())
    assert written == [f'{i:05d}.jpg' for i in range(5)]
    for name in written:
        drawn = mmcv.imread(str(out / name))
        assert drawn.shape == (40, 56, 3)
    # With every instance drawn, the frames are not left as they were.
    original = mmcv.imread(str(frame_dir / written[0])).astype(int)
    assert np.abs(mmcv.imread(str(out / written[0])) - original).mean() > 1
    assert 'written to' in capsys.readouterr().out


def test_video_in_video_out(tmp_path):
    src = str(tmp_path / 'in.mp4')
    writer = cv2.VideoWriter(src, cv2.VideoWriter_fourcc(*'mp4v'), 5, (56, 40))
    for frame in _frames(3):
        writer.write(frame)
    writer.release()
    out = str(tmp_path / 'sub' / 'out.mp4')
    video_demo.main([src, CONFIG, '--out', out])
    reader = mmcv.VideoReader(out)
    assert len([f for f in reader]) == 3
    assert reader.resolution == (56, 40)


def test_clear_errors(frame_dir, tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match='no .* frames in folder'):
        video_demo.main([str(empty), CONFIG, '--out', str(tmp_path / 'o')])
    broken = tmp_path / 'broken.mp4'
    broken.write_text('not a video')
    with pytest.raises(ValueError, match='broken.mp4'):
        video_demo.main([str(broken), CONFIG, '--out', str(tmp_path / 'o')])
    with pytest.raises(FileNotFoundError, match='missing.mp4'):
        video_demo.main([
            str(tmp_path / 'missing.mp4'), CONFIG, '--out',
            str(tmp_path / 'o')
        ])
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        video_demo.main([
            str(frame_dir), CONFIG, '--checkpoint',
            str(tmp_path / 'nope.pth'), '--out',
            str(tmp_path / 'o')
        ])
    with pytest.raises(ValueError, match='out.mkv'):
        video_demo.main(
            [str(frame_dir), CONFIG, '--out',
             str(tmp_path / 'out.mkv')])


def test_out_may_not_be_the_input(frame_dir, tmp_path):
    before = {p.name: p.read_bytes() for p in frame_dir.iterdir()}
    link = tmp_path / 'link'
    link.symlink_to(frame_dir)
    for out in (frame_dir, frame_dir / 'drawn', link, frame_dir / '.'):
        with pytest.raises(ValueError, match='refusing to write over the '
                           'input'):
            video_demo.main([str(frame_dir), CONFIG, '--out', str(out)])
    src = tmp_path / 'in.mp4'
    src.write_bytes(b'video bytes')
    with pytest.raises(ValueError, match='in.mp4 is the input'):
        video_demo.main([str(src), CONFIG, '--out', str(src)])
    assert src.read_bytes() == b'video bytes'
    assert {p.name: p.read_bytes() for p in frame_dir.iterdir()} == before
