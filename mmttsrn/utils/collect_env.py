"""Print the environment for bug reports.

Run ``python -m mmttsrn.utils.collect_env``.
"""
from mmengine.utils import get_git_hash
from mmengine.utils.dl_utils import collect_env as collect_base_env

import mmttsrn
from mmttsrn.compat import PATCH_STATUS


def _mmcv_ops_status() -> str:
    """Whether mmcv's compiled ops (``mmcv._ext``) import."""
    try:
        from mmcv.utils import ext_loader
        ext_loader.load_ext('_ext', ['nms'])
    except Exception as err:  # any failure means the ops are unusable
        return f'not compiled ({type(err).__name__}: {err})'
    return 'compiled'


def collect_env() -> dict:
    """Versions of Python, torch, CUDA, the OpenMMLab stack, timm and us,
    and which patches of :mod:`mmttsrn.compat` were applied."""
    import mmcv
    import mmdet
    import timm

    env = collect_base_env()
    # The full build string is noise in a bug report.
    env.pop('PyTorch compiling details', None)
    env['MMCV'] = mmcv.__version__
    env['MMCV ops'] = _mmcv_ops_status()
    env['MMDetection'] = mmdet.__version__
    env['timm'] = timm.__version__
    env['mmttsrn'] = mmttsrn.__version__ + '+' + get_git_hash(digits=7)
    for name, status in PATCH_STATUS.items():
        env[f'compat {name}'] = status
    return env


def main():
    for name, value in collect_env().items():
        print(f'{name}: {value}')


if __name__ == '__main__':
    main()
