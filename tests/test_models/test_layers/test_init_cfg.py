from mmttsrn.models.layers import pretrained_cfg


def test_pretrained_cfg_finds_the_pretrained_entry():
    pretrained = dict(type='Pretrained', checkpoint='w.pth')
    assert pretrained_cfg(None) is None
    assert pretrained_cfg(dict(type='Xavier')) is None
    assert pretrained_cfg(pretrained) is pretrained
    assert pretrained_cfg([dict(type='Xavier'), pretrained]) is pretrained
    assert pretrained_cfg([None, dict(type='Normal')]) is None
