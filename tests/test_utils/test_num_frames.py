"""The clip length T is set once, by the top-level ``num_frames``."""
import pytest
from mmengine.config import Config

from mmttsrn.datasets.transforms import ClipFrameSample
from mmttsrn.utils import load_tool_config, sync_num_frames


def _cfg(num_frames=None, head=None, sampler=None, dataset=None):
    """A config with a head, a train pipeline and a pseudo-video dataset;
    ``None`` leaves that key out."""

    def site(type_, value):
        return dict(type=type_) if value is None else dict(
            type=type_, num_frames=value)

    cfg = dict(
        model=dict(type='TTSRN', track_head=site('TTSRNHead', head)),
        train_dataloader=dict(
            dataset=dict(
                type='mmengine.ConcatDataset',
                datasets=[
                    dict(
                        type='YouTubeVISOfficialDataset',
                        pipeline=[
                            site('ClipFrameSample', sampler),
                            dict(type='PackTrackInputs')
                        ]),
                    site('ImagePseudoVideoDataset', dataset)
                ])))
    if num_frames is not None:
        cfg['num_frames'] = num_frames
    return Config(cfg)


def _values(cfg):
    datasets = cfg.train_dataloader.dataset.datasets
    return (cfg.num_frames, cfg.model.track_head.num_frames,
            datasets[0].pipeline[0].num_frames, datasets[1].num_frames)


def test_left_out_keys_are_filled_in():
    assert _values(sync_num_frames(_cfg(num_frames=5))) == (5, 5, 5, 5)


def test_keys_a_base_wrote_follow_a_changed_num_frames():
    """A child config's `num_frames = 18`, or `--cfg-options
    num_frames=18`, over keys a base file wrote with 36."""
    cfg = _cfg(num_frames=18, head=36, sampler=36, dataset=36)
    assert _values(sync_num_frames(cfg)) == (18, 18, 18, 18)
    cfg = _cfg(num_frames=18, sampler=36)
    assert _values(sync_num_frames(cfg)) == (18, 18, 18, 18)


@pytest.mark.parametrize('num_frames', [36, 18])
def test_one_key_overridden_alone_is_an_error(num_frames):
    cfg = _cfg(num_frames=num_frames, head=18, sampler=36, dataset=36)
    with pytest.raises(ValueError) as info:
        sync_num_frames(cfg)
    message = str(info.value)
    assert f'top-level num_frames ({num_frames})' in message
    assert '18 at model.track_head.num_frames' in message
    assert ('36 at train_dataloader.dataset.datasets.0.pipeline.0.'
            'num_frames, train_dataloader.dataset.datasets.1.num_frames'
            in message)
    assert 'Set num_frames alone' in message


def test_without_top_level_num_frames_the_keys_give_it():
    assert _values(sync_num_frames(_cfg(sampler=6))) == (6, 6, 6, 6)
    cfg = sync_num_frames(_cfg())
    assert 'num_frames' not in cfg
    assert 'num_frames' not in cfg.model.track_head


def test_scoped_and_class_types_are_sites_and_others_are_not():
    cfg = Config(
        dict(
            num_frames=3,
            pipeline=[
                dict(type='mmttsrn.ClipFrameSample'),
                dict(type=ClipFrameSample),
                dict(type='UniformRefFrameSample', num_frames=7)
            ]))
    sync_num_frames(cfg)
    assert [step.get('num_frames') for step in cfg.pipeline] == [3, 3, 7]


def test_tool_loader_applies_it(tmp_path):
    config = tmp_path / 'cfg.py'
    config.write_text(
        'num_frames = 36\n'
        "model = dict(track_head=dict(type='TTSRNHead'))\n"
        "train_pipeline = [dict(type='ClipFrameSample', "
        'num_frames=num_frames)]\n')
    cfg = load_tool_config(str(config))
    assert cfg.model.track_head.num_frames == 36
    cfg = load_tool_config(str(config), cfg_options=dict(num_frames=18))
    assert cfg.model.track_head.num_frames == 18
    assert cfg.train_pipeline[0].num_frames == 18
    with pytest.raises(ValueError, match='model.track_head.num_frames'):
        load_tool_config(
            str(config), cfg_options={'model.track_head.num_frames': 18})
