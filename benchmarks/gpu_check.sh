#!/usr/bin/env bash
# The GPU check on a bare machine (see benchmarks/gpu_check.py): install the carried wheels (no dependencies, no
# index: that machine's NumPy and the rest stay as they are), then run the check from this checkout.
#
#   bash benchmarks/gpu_wheels.sh            # here, once: the wheels, into benchmarks/wheels/
#   bash benchmarks/gpu_check.sh [--quick]   # there (device tool: carry benchmarks/wheels); JSON under $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if compgen -G "benchmarks/wheels/*.whl" >/dev/null; then
  "$python" -m pip install --quiet --no-deps --no-index benchmarks/wheels/*.whl
fi
export PYTHONUNBUFFERED=1
exec "$python" benchmarks/gpu_check.py "$@"
