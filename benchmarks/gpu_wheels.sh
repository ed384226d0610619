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
# the versions of setup.py's pins where tagger pins them; the helpers at the versions this checkout's tests use
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest wheels \
  --python-version "$version" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --implementation cp \
  keras==3.15.1 optree==0.20.0 namex==0.1.0 \
  soundfile==0.14.0 soxr==0.5.0.post1 cffi==2.1.1 pycparser==3.12 \
  pescador==3.0.0 decorator==5.3.1 pyzmq==27.3.0  # msgpack, joblib, numpy, pandas, scikit-learn, tqdm: there already
du -sh wheels
ls wheels
