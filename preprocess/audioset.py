"""``python preprocess/audioset.py SOURCE --out DIR [options]`` is ``tagger prepare audioset SOURCE --out DIR [options]``.

A thin script for a checkout: the adapter itself is :mod:`tagger.datasets.audioset`, installed with the package.
``python preprocess/audioset.py --help`` lists the options.
"""

import sys

from tagger.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", "audioset", *sys.argv[1:]]))
