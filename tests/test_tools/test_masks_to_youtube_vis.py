"""masks_to_youtube_vis.py: DAVIS-style PNG masks to YouTube-VIS JSON."""
import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from mask_folder_utils import HEIGHT, VIDEOS, WIDTH
from PIL import Image
from tool_loader import load_tool

from mmttsrn.datasets import YouTubeVISOfficialDataset

tool = load_tool('tools/dataset_converters/masks_to_youtube_vis.py')


def _convert(root, categories, tmp_path, *extra):
    out = tmp_path / 'out' / 'all.json'
    tool.main([
        str(root), '--categories',
        str(categories), '--out',
        str(out), *extra
    ])
    return out


def test_lossless_and_official_layout(mask_folder, tmp_path, capsys):
    root, categories, id_maps = mask_folder
    assert Image.open(root / 'Annotations' / 'video3' / '00000.png').mode \
        == 'P'
    out = _convert(root, categories, tmp_path)
    assert 'wrote' in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data['categories'] == [
        dict(id=1, name='cat'), dict(id=2, name='dog')
    ]
    assert [v['file_names'] for v in data['videos']][0] == [
        'video1/00000.jpg', 'video1/00001.jpg', 'video1/00002.jpg'
    ]
    assert [(v['id'], v['length'], v['height'], v['width'])
            for v in data['videos']] == [(1, 3, HEIGHT, WIDTH),
                                         (2, 2, HEIGHT, WIDTH),
                                         (3, 3, HEIGHT, WIDTH)]
    assert len(data['annotations']) == 5
    videos = {v['id']: v for v in data['videos']}
    # Decoding every RLE rebuilds every PNG exactly.
    rebuilt = {
        key: np.zeros_like(ids)
        for key, ids in id_maps.items()
    }
    names = {'video1': {1: 1, 2: 2}, 'video2': {1: 2}, 'video3': {1: 1, 3: 2}}
    for ann in data['annotations']:
        video = videos[ann['video_id']]
        name = video['file_names'][0].split('/')[0]
        # Annotations are in (video, instance id) order.
        instance_id = sorted(VIDEOS[name][1])[[
            a['id'] for a in data['annotations']
            if a['video_id'] == ann['video_id']
        ].index(ann['id'])]
        assert ann['category_id'] == names[name][instance_id]
        for t, (rle, box, area) in enumerate(
                zip(ann['segmentations'], ann['bboxes'], ann['areas'])):
            if rle is None:
                assert box is None and area is None
                assert VIDEOS[name][1][instance_id][t] is None
                continue
            mask = mask_utils.decode(
                dict(size=rle['size'], counts=rle['counts'].encode()))
            rebuilt[name, f'{t:05d}'][mask.astype(bool)] = instance_id
            x0, y0, x1, y1 = VIDEOS[name][1][instance_id][t]
            assert box == [x0, y0, x1 - x0, y1 - y0]
            assert area == mask.sum()
    for key, ids in id_maps.items():
        np.testing.assert_array_equal(rebuilt[key], ids, err_msg=str(key))
    # The dataset reads it.
    ds = YouTubeVISOfficialDataset(
        ann_file=str(out), data_prefix=dict(img_path=str(root)))
    assert ds.metainfo['classes'] == ('cat', 'dog')
    assert len(ds) == 3


def _error(root, categories, tmp_path, match):
    with pytest.raises(SystemExit, match=match):
        _convert(root, categories, tmp_path)
    assert not (tmp_path / 'out').exists() or not any(
        (tmp_path / 'out').iterdir()), 'something was written'


def test_missing_mask_and_orphan_mask(mask_folder, tmp_path):
    root, categories, _ = mask_folder
    (root / 'Annotations' / 'video2' / '00001.png').rename(
        root / 'Annotations' / 'video2' / '00009.png')
    _error(root, categories, tmp_path,
           r"video2: no mask for frames \['00001'\]")
    (root / 'JPEGImages' / 'video2' / '00001.jpg').unlink()
    _error(root, categories, tmp_path, r"masks without a frame .*00009.png")


def test_size_mismatch(mask_folder, tmp_path):
    root, categories, _ = mask_folder
    png = root / 'Annotations' / 'video1' / '00002.png'
    Image.fromarray(np.zeros((HEIGHT, WIDTH + 2), np.uint8)).save(png)
    _error(root, categories, tmp_path,
           rf'00002.png: {HEIGHT}x{WIDTH + 2} \(h x w\), but its frame')
    jpg = root / 'JPEGImages' / 'video1' / '00001.jpg'
    Image.fromarray(np.zeros((HEIGHT + 1, WIDTH, 3), np.uint8)).save(jpg)
    _error(root, categories, tmp_path, r'video1/00001.jpg: .*first frame')


def test_ids_and_videos_without_categories(mask_folder, tmp_path):
    root, categories, _ = mask_folder
    cats = json.loads(categories.read_text())
    del cats['video3']['3']
    categories.write_text(json.dumps(cats))
    _error(root, categories, tmp_path,
           r"video3/00001.png: instance id 3 has no category")
    del cats['video3']
    categories.write_text(json.dumps(cats))
    _error(root, categories, tmp_path, r"no entry for video 'video3'")
    cats.update(video3={'1': 'cat', '3': 'dog'}, video9={})
    categories.write_text(json.dumps(cats))
    _error(root, categories, tmp_path, r"videos \['video9'\] are not")
    categories.write_text('{"video1": {"x": "cat"}}')
    _error(root, categories, tmp_path, "instance id 'x' is not a positive")
    categories.write_text('{oops')
    _error(root, categories, tmp_path, 'categories.json: not valid JSON')


def test_rgb_masks_are_refused(mask_folder, tmp_path):
    root, categories, _ = mask_folder
    png = root / 'Annotations' / 'video2' / '00000.png'
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(png)
    _error(root, categories, tmp_path, r'video2/00000.png: mode RGB')


def test_refuses_to_overwrite(mask_folder, tmp_path):
    root, categories, _ = mask_folder
    out = _convert(root, categories, tmp_path)
    before = out.read_text()
    with pytest.raises(SystemExit, match='--overwrite'):
        _convert(root, categories, tmp_path)
    _convert(root, categories, tmp_path, '--overwrite')
    assert out.read_text() == before
    # A failed run leaves the earlier file as it was, and no temp file.
    (root / 'Annotations' / 'video1' / '00000.png').unlink()
    with pytest.raises(SystemExit, match='no mask'):
        _convert(root, categories, tmp_path, '--overwrite')
    assert out.read_text() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ['all.json']
