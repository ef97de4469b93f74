"""Print the environment for bug reports.

Same as ``python -m mmttsrn.utils.collect_env``.
"""
from mmttsrn.utils.collect_env import main

if __name__ == '__main__':
    main()
