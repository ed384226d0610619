#!/usr/bin/env bash
# Two installs a user meets, each in a fresh virtual environment under a work folder, each ending with the unit tier
# (the checkout's tests on the installed dependencies). Not part of .ci/run (about ten minutes of fresh
# environments); its output goes in the closing note of a change to setup.py's ranges.
#
# 1. beside others: an environment already holding other supported versions of numpy, pandas, scikit-learn and
#    matplotlib (one minor below the lock's) gets the built wheel with plain pip; pip's report must change none
#    of them.
# 2. lowest: every direct requirement at the lowest version setup.py allows (uv's --resolution lowest-direct).
#
#   bash .ci/install_checks.sh [WORK_FOLDER]      (default /tmp/tagger-install-checks)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
work="${1:-/tmp/tagger-install-checks}"
rm -rf "$work"
mkdir -p "$work"
export TF_CPP_MIN_LOG_LEVEL=2
python3 -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" . >/dev/null
wheel=$(ls "$work"/dist/vggish_tagger-*.whl)
echo "built $(basename "$wheel")"

failed=0
unit_tier() {  # the unit tier of the checkout's tests, run by the environment's python; a failure is counted
  if ! (cd "$root" && "$1/bin/python" -m pytest -q -n 2 -m unit -p no:cacheprovider -rfs > "$1.unit.log" 2>&1); then
    failed=1
  fi
  grep -E "^(FAILED|SKIPPED)|passed|failed" "$1.unit.log" | tail -12
}

echo "== 1. beside numpy, pandas, scikit-learn and matplotlib one minor below the lock"
python3 -m venv "$work/beside"
"$work/beside/bin/python" -m pip install --quiet --upgrade pip
"$work/beside/bin/python" -m pip install --quiet "numpy~=2.3.0" "pandas~=3.0.0" "scikit-learn~=1.8.0" "matplotlib~=3.10.0"
before=$("$work/beside/bin/python" -m pip list --format=freeze | grep -iE "^(numpy|pandas|scikit-learn|matplotlib)==")
echo "before: $(echo "$before" | tr '\n' ' ')"
"$work/beside/bin/python" -m pip install --quiet --report "$work/beside.json" "${wheel}[test]"
"$work/beside/bin/python" - "$work/beside.json" <<'PY'
import json, sys
moved = [i["metadata"]["name"] + "==" + i["metadata"]["version"] for i in json.load(open(sys.argv[1]))["install"]
         if i["metadata"]["name"].lower() in ("numpy", "pandas", "scikit-learn", "matplotlib")]
print("pip's report installs of those four:", moved or "none")
sys.exit(1 if moved else 0)
PY
after=$("$work/beside/bin/python" -m pip list --format=freeze | grep -iE "^(numpy|pandas|scikit-learn|matplotlib)==")
[[ "$before" == "$after" ]] || { echo "changed: $after"; exit 1; }
"$work/beside/bin/python" -m pip check
unit_tier "$work/beside"

echo "== 2. the lowest versions setup.py allows (uv --resolution lowest-direct)"
python3 -m venv "$work/lowest"
"$work/lowest/bin/python" -m pip install --quiet "uv==0.13.9"
# the checkout, not the wheel: uv takes a source tree's requirements as direct ones (a wheel's as transitive, which
# lowest-direct leaves at their newest)
"$work/lowest/bin/python" -m uv pip install --quiet --resolution lowest-direct "${root}[test]"
"$work/lowest/bin/python" -m pip list --format=freeze | grep -iE "^(tensorflow|keras|numpy|pandas|scikit-learn|matplotlib|librosa|soundfile|soxr|pescador|optuna|audiomentations|huggingface.hub|safetensors|pyarrow|tqdm|threadpoolctl|tensorflow-hub|tf-keras|tensorboard|pytest|pytest-xdist)==" | tr '\n' ' '
echo
"$work/lowest/bin/python" -m pip check
unit_tier "$work/lowest"
exit "$failed"
