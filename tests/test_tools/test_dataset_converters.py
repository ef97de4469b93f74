"""The dataset converter CLIs: synthetic data and the local val split."""
import json
from collections import Counter
from pathlib import Path

import pytest
from tool_loader import load_tool


def _tool(name):
    return load_tool(f'tools/dataset_converters/{name}.py')


make_synthetic_vis = _tool('make_synthetic_vis')
split_youtube_vis = _tool('split_youtube_vis')


def _load(path):
    return json.loads(Path(path).read_text())


@pytest.fixture(scope='module')
def train_json(tmp_path_factory):
    """An annotated train.json of 40 tiny synthetic videos."""
    root = tmp_path_factory.mktemp('synthetic')
    make_synthetic_vis.main([
        '--out',
        str(root), '--num-train', '40', '--num-val', '0', '--frames', '2', '3',
        '--size', '16', '24'
    ])
    return root / 'annotations' / 'train.json'


def test_make_synthetic_cli(tmp_path, capsys):
    args = [
        '--out',
        str(tmp_path), '--num-train', '2', '--num-val', '1', '--seed', '1',
        '--frames', '2', '3', '--size', '16', '20', '--max-instances', '2'
    ]
    make_synthetic_vis.main(args)
    assert 'valid_unannotated.json' in capsys.readouterr().out
    train = _load(tmp_path / 'annotations' / 'train.json')
    assert len(train['videos']) == 2
    assert all(2 <= v['length'] <= 3 for v in train['videos'])
    assert len(_load(tmp_path / 'annotations' / 'valid.json')['videos']) == 1
    with pytest.raises(FileExistsError, match='--overwrite'):
        make_synthetic_vis.main(args)
    make_synthetic_vis.main(args + ['--overwrite'])


def _categories_of(ann):
    cats = {}
    for a in ann['annotations']:
        cats.setdefault(a['video_id'], set()).add(a['category_id'])
    return cats


def test_split_is_disjoint_complete_and_balanced(train_json, tmp_path):
    split_youtube_vis.main([
        str(train_json), '--val-ratio', '0.25', '--seed', '0', '--out-dir',
        str(tmp_path)
    ])
    full = _load(train_json)
    train = _load(tmp_path / 'train_sub.json')
    val = _load(tmp_path / 'val_sub.json')
    for part in (train, val):
        assert part['categories'] == full['categories']
        ids = {v['id'] for v in part['videos']}
        assert {a['video_id'] for a in part['annotations']} <= ids
    train_ids = {v['id'] for v in train['videos']}
    val_ids = {v['id'] for v in val['videos']}
    assert not train_ids & val_ids
    assert train_ids | val_ids == {v['id'] for v in full['videos']}
    assert len(train['annotations']) + len(val['annotations']) == len(
        full['annotations'])
    # Each category sends about a quarter of its videos to val.
    cats = _categories_of(full)
    per_cat = Counter(c for v in cats.values() for c in v)
    val_per_cat = Counter(c for v in val_ids for c in cats.get(v, ()))
    for cat, num in per_cat.items():
        assert abs(val_per_cat[cat] - 0.25 * num) <= 1.5, (cat, num)
        assert val_per_cat[cat] < num, 'a category kept for training'


def test_split_is_seeded(train_json, tmp_path):
    ann = _load(train_json)
    first = split_youtube_vis.split_video_ids(ann, 0.25, seed=0)
    assert first == split_youtube_vis.split_video_ids(ann, 0.25, seed=0)
    assert first != split_youtube_vis.split_video_ids(ann, 0.25, seed=1)


def test_split_refuses_to_overwrite(train_json, tmp_path):
    with pytest.raises(SystemExit, match='overwrite the input'):
        split_youtube_vis.main([
            str(train_json), '--out-dir',
            str(train_json.parent), '--train-name', 'train.json'
        ])
    args = [str(train_json), '--out-dir', str(tmp_path)]
    split_youtube_vis.main(args)
    with pytest.raises(SystemExit, match='exists; pass --overwrite'):
        split_youtube_vis.main(args)
    split_youtube_vis.main(args + ['--overwrite'])


def test_split_rejects_unannotated_files_and_bad_ratios(tmp_path):
    path = tmp_path / 'valid.json'
    path.write_text(json.dumps(dict(videos=[], categories=[])))
    with pytest.raises(SystemExit, match="missing 'annotations'"):
        split_youtube_vis.main([str(path), '--out-dir', str(tmp_path)])
    with pytest.raises(ValueError, match='val_ratio'):
        split_youtube_vis.split_video_ids(dict(videos=[], annotations=[]), 1.5)


@pytest.mark.parametrize('text,message', [
    ('{"videos": [', 'bad.json is not valid JSON'),
    ('[1, 2]', 'bad.json must hold a JSON object'),
    ('{"videos": [{"name": "x"}], "annotations": []}',
     "bad.json: video #0 has no 'id'"),
    ('{"videos": [{"id": 1}], "annotations": [{"id": 3}]}',
     "bad.json: annotation #0 needs 'video_id'"),
])
def test_split_names_the_bad_file(tmp_path, text, message):
    path = tmp_path / 'bad.json'
    path.write_text(text)
    out = tmp_path / 'out'
    with pytest.raises(SystemExit, match=message):
        split_youtube_vis.main([str(path), '--out-dir', str(out)])
    assert not out.exists()


def test_split_refuses_annotations_of_unknown_videos(train_json, tmp_path):
    ann = _load(train_json)
    ann['annotations'][0]['video_id'] = 999
    ann['annotations'][1]['video_id'] = 998
    path = tmp_path / 'orphans.json'
    path.write_text(json.dumps(ann))
    first = ann['annotations'][0]['id']
    message = (rf'orphans.json: 2 annotations refer to videos that are not '
               rf"in 'videos' \(annotation ids \[{first},")
    with pytest.raises(SystemExit, match=message):
        split_youtube_vis.main([str(path), '--out-dir', str(tmp_path)])
    assert not (tmp_path / 'train_sub.json').exists()
