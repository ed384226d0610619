#!/usr/bin/env bash
# Remakes the lock, .ci/constraints.txt: the exact set CI installs (`-c .ci/constraints.txt`), for every package of
# tagger[test,beam,jax,docs] on Python 3.11, Linux x86-64. uv keeps every version the file already holds that
# setup.py's ranges still allow, and resolves only what is new or no longer allowed; --upgrade takes the newest
# versions everywhere (then run the whole suite before committing it).
#
#   bash .ci/lock.sh [--upgrade]
set -euo pipefail
cd "$(dirname "$0")/.."
python -m uv pip compile setup.py --extra test --extra beam --extra jax --extra docs \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet "$@" -o .ci/constraints.txt
