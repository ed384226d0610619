"""``python preprocess/mtt.py SOURCE --out DIR [options]`` is ``tagger prepare mtt SOURCE --out DIR [options]``.

A thin script for a checkout: the adapter itself is :mod:`tagger.datasets.mtt`, installed with the package.
``python preprocess/mtt.py --help`` lists the options.
"""

import sys

from tagger.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", "mtt", *sys.argv[1:]]))
