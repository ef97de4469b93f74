"""Every config loads and every ``type=`` it names is registered."""
import re
from pathlib import Path

import pytest
import yaml
from mmdet import registry as mmdet_registry
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.registry import Registry

import mmttsrn  # noqa: F401
from mmttsrn.utils import load_tool_config
from mmttsrn.utils.config import CLIP_LENGTH_TYPES

CONFIG_DIR = Path(__file__).parents[1] / 'configs'
CONFIGS = sorted(
    p for p in CONFIG_DIR.rglob('*.py') if '_base_' not in p.parts)
REGISTRIES = [
    obj for obj in vars(mmdet_registry).values() if isinstance(obj, Registry)
]

register_all_modules(init_default_scope=True)


def _types(node, path='cfg'):
    """Yield (path, type name) for every dict with a string ``type``."""
    if isinstance(node, dict):
        if isinstance(node.get('type'), str):
            yield path, node['type']
        for key, value in node.items():
            yield from _types(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _types(value, f'{path}[{i}]')


def _registered(name):
    return any(reg.get(name) is not None for reg in REGISTRIES)


def test_configs_exist():
    assert CONFIGS, f'no configs under {CONFIG_DIR}'


@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: p.stem)
def test_config_types_are_registered(config):
    cfg = Config.fromfile(str(config))
    missing = [(path, name) for path, name in _types(cfg.to_dict())
               if not _registered(name)]
    assert not missing, f'{config.name}: unregistered types {missing}'


def test_a_typo_is_caught():
    assert _registered('TTSRN')
    assert not _registered('TTSRNN')


@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: p.stem)
def test_every_epoch_is_checkpointed_and_results_follow_the_work_dir(config):
    """An interrupted run can resume from its last epoch (a few are kept),
    also with ``--cfg-options train_cfg.max_epochs=3``; test results go to
    ``<work_dir>/results`` (tools/test.py) unless a run says otherwise."""
    cfg = Config.fromfile(str(config))
    assert not cfg.test_evaluator.get('outfile_prefix')
    checkpoint = cfg.default_hooks.checkpoint
    assert 1 <= checkpoint.get('max_keep_ckpts', -1) <= 5, checkpoint
    if not checkpoint.get('by_epoch', True):
        pytest.skip('iteration-based schedule')
    cfg.merge_from_dict({'train_cfg.max_epochs': 3})
    assert cfg.default_hooks.checkpoint.get('interval', -1) == 1, checkpoint


# `train_pipeline[1].transforms[2].scale = ...` or `*pipeline[1:]`: a change
# of the base pipeline's order would silently patch another step.
INDEX_PATCH = re.compile(r'(pipeline|transforms)\[\s*-?\d*\s*:?\s*-?\d*\s*\]')


@pytest.mark.parametrize(
    'config', sorted(CONFIG_DIR.rglob('*.py')), ids=lambda p: p.stem)
def test_no_config_patches_a_pipeline_by_list_index(config):
    code = '\n'.join(
        line.split('#')[0] for line in config.read_text().splitlines())
    assert not INDEX_PATCH.search(code), \
        f'{config.name} patches a pipeline by list index; write it out'


def test_metafile_and_readme_list_every_config():
    ttsrn = CONFIG_DIR / 'ttsrn'
    names = {p.stem for p in ttsrn.glob('*.py')}
    index = yaml.safe_load((ttsrn / 'metafile.yml').read_text())
    models = {m['Name']: m for m in index['Models']}
    assert set(models) == names
    root = CONFIG_DIR.parent
    for name, model in models.items():
        assert model['Config'] == f'configs/ttsrn/{name}.py'
        assert model['In Collection'] == index['Collections'][0]['Name']
    assert (root / index['Collections'][0]['README']).is_file()
    readme = (ttsrn / 'README.md').read_text()
    missing = [n for n in names if f'[{n}.py](./{n}.py)' not in readme]
    assert not missing, f'README.md does not list {missing}'


def _clip_lengths(node, path=''):
    """{cfg-options key: num_frames} of every dict that takes the clip
    length."""
    found = {}
    if isinstance(node, dict):
        if str(node.get('type')).split('.')[-1] in CLIP_LENGTH_TYPES:
            found[f'{path}num_frames'] = node.get('num_frames')
        for key, value in node.items():
            found.update(_clip_lengths(value, f'{path}{key}.'))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found.update(_clip_lengths(value, f'{path}{i}.'))
    return found


@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: p.stem)
def test_clip_length_is_set_once(config):
    """The loaders give the head and every clip sampler the top-level
    num_frames; `--cfg-options num_frames=18` changes them all, and one of
    them overridden alone is an error."""
    cfg = load_tool_config(str(config))
    lengths = _clip_lengths(cfg.to_dict())
    assert 'model.track_head.num_frames' in lengths
    assert 'train_dataloader.dataset.pipeline.0.num_frames' in lengths or \
        'train_dataloader.dataset.datasets.0.pipeline.0.num_frames' in lengths
    assert set(lengths.values()) == {cfg.num_frames}, lengths

    cfg = load_tool_config(str(config), cfg_options=dict(num_frames=18))
    lengths = _clip_lengths(cfg.to_dict())
    assert set(lengths.values()) == {18}, lengths

    with pytest.raises(ValueError, match='model.track_head.num_frames'):
        load_tool_config(
            str(config),
            cfg_options={'model.track_head.num_frames': cfg.num_frames + 1})


def test_the_18_frame_ablation_is_one_line():
    config = CONFIG_DIR / 'ttsrn' / 'ttsrn_yvis_18f.py'
    code = [
        line for line in config.read_text().splitlines()
        if line.strip() and not line.startswith('#')
    ]
    assert code == ["_base_ = './ttsrn_yvis.py'", 'num_frames = 18']
    cfg = load_tool_config(str(config))
    assert set(_clip_lengths(cfg.to_dict()).values()) == {18}
    # The model config leaves T to the dataset's num_frames.
    model = Config.fromfile(str(CONFIG_DIR / '_base_/models/ttsrn_twins.py'))
    assert 'num_frames' not in model.model.track_head
