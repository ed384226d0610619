"""``python preprocess/gtzan.py SOURCE --out DIR [options]`` is ``tagger prepare gtzan SOURCE --out DIR [options]``.

A thin script for a checkout: the adapter itself is :mod:`tagger.datasets.gtzan`, installed with the package.
``python preprocess/gtzan.py --help`` lists the options.
"""

import sys

from tagger.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", "gtzan", *sys.argv[1:]]))
