"""``python preprocess/folder.py SOURCE --out DIR [options]`` is ``tagger prepare folder SOURCE --out DIR [options]``.

A thin script for a checkout: the adapter itself is :mod:`tagger.datasets.folder`, installed with the package.
``python preprocess/folder.py --help`` lists the options.
"""

import sys

from tagger.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", "folder", *sys.argv[1:]]))
