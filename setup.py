import os.path as osp
from setuptools import find_packages, setup


def readme():
    with open('README.md', encoding='utf-8') as f:
        return f.read()


def get_version():
    scope = {}
    with open(osp.join('mmttsrn', 'version.py'), encoding='utf-8') as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname):
    """Requirement lines of ``requirements/<fname>``, following ``-r``."""
    reqs = []
    with open(osp.join('requirements', fname), encoding='utf-8') as f:
        for line in f:
            line = line.split('#')[0].strip()
            if not line:
                continue
            if line.startswith('-r '):
                reqs += parse_requirements(osp.basename(line[3:].strip()))
            else:
                reqs.append(line)
    return reqs


if __name__ == '__main__':
    setup(
        name='mmttsrn',
        version=get_version(),
        description='TT-SRN video instance segmentation as an OpenMMLab '
        'extension',
        long_description=readme(),
        long_description_content_type='text/markdown',
        keywords='video instance segmentation, transformer, SIREN, '
        'mmdetection',
        packages=find_packages(exclude=('configs', 'tools', 'tests', 'demo')),
        python_requires='>=3.9',
        license='Apache License 2.0',
        install_requires=parse_requirements('runtime.txt') +
        parse_requirements('mmcv.txt') + parse_requirements('torch.txt'),
        extras_require=dict(
            tests=parse_requirements('tests.txt'),
            optional=parse_requirements('optional.txt'),
            build=parse_requirements('build.txt')),
        zip_safe=False)
