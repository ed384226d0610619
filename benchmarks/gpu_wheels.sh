#!/usr/bin/env bash
# The wheels the GPU check (benchmarks/gpu_check.sh) carries to a machine that has PyTorch, JAX, NumPy, pandas,
# scikit-learn and the like but not what tagger adds: Keras 3 and its two small helpers, the audio readers and
# pescador. Downloaded here (where the package registry is reachable) for that machine's Python 3.12 on
# manylinux x86-64, into benchmarks/wheels/ (ignored by git; carry it with the check).
#
#   bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]
set -euo pipefail
cd "$(dirname "$0")"
version="${1:-3.12}"
rm -rf wheels
mkdir -p wheels
# the versions of the lock CI installs with (.ci/constraints.txt), never a copy of them here
lock=../.ci/constraints.txt
pinned() {
  local name
  for name in "$@"; do
    grep -i -m1 "^${name}==" "$lock" || { echo "$name is not in $lock" >&2; exit 1; }
  done
}
# msgpack, joblib, numpy, pandas, scikit-learn, tqdm: there already
mapfile -t wanted < <(pinned keras optree namex soundfile soxr cffi pycparser pescador decorator pyzmq)
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest wheels \
  --python-version "$version" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --implementation cp "${wanted[@]}"
du -sh wheels
ls wheels
