#!/usr/bin/env bash
# VGGish unchanged across a refactor: what an older tagger made, this one serves, resumes and loads, and on the same
# machine both write the same bytes.
#
#   bash benchmarks/vggish_unchanged.sh OLD_COMMIT [WORK_DIR]
#
# With the fixture weights of `python -m tagger.testing` (random, in the official layout; the real ones cannot be
# downloaded here) and the ten GTZAN tracks of ../shared, in float32:
#   1. `tagger tag --model music` rows, taggrams and cache entries of OLD_COMMIT and of the working tree: compared
#      byte for byte (the entries: their pickled bytes);
#   2. the old cache served by the new code (`tagger embed` into it embeds nothing);
#   3. an old tag output cut to its first three rows, resumed by the new code: the same bytes as the whole one;
#   4. a run folder trained by the old code (`prepare gtzan`, `train`) tagging with the new code: the same rows as
#      the old code's.
# Prints one line per check and exits 1 on the first difference.
set -euo pipefail
OLD=${1:?usage: vggish_unchanged.sh OLD_COMMIT [WORK_DIR]}
ROOT=$(git rev-parse --show-toplevel)
WORK=${2:-$(mktemp -d -t tagger-unchanged-XXXX)}
SHARED=$(cd "$ROOT/../shared" && pwd)
mkdir -p "$WORK/old"
git -C "$ROOT" archive "$OLD" | tar -x -C "$WORK/old"
mapfile -t CLIPS < <(ls "$SHARED"/data/gtzan/genres/*/*.au | sort)
export TAGGER_PRECISION=float32 PYTHONDONTWRITEBYTECODE=1

tagger() {  # tagger TREE ARGS...: the CLI of one source tree (its log lines in WORK/log.txt)
    local tree=$1
    shift
    PYTHONPATH="$tree" python -m tagger "$@" 2>>"$WORK/log.txt"
}

eval "$(python -m tagger.testing "$WORK/fixture" | grep '^export ')"
same() {  # same WHAT A B
    if cmp -s "$2" "$3"; then echo "same: $1"; else echo "DIFFERENT: $1 ($2, $3)"; exit 1; fi
}

started=$(date +%s)
for side in old new; do
    tree=$([ $side = old ] && echo "$WORK/old" || echo "$ROOT")
    tagger "$tree" tag "${CLIPS[@]}" --model music --allow-other-embedding --workers 1 --no-progress \
        --out "$WORK/$side.csv" --taggram "$WORK/$side.taggram" --cache "$WORK/$side.cache" >/dev/null
done
same "tag rows (music head, 10 GTZAN tracks)" "$WORK/old.csv" "$WORK/new.csv"
n=0
while IFS= read -r f; do
    cmp -s "$WORK/old.taggram/$f" "$WORK/new.taggram/$f" || { echo "DIFFERENT: taggram $f"; exit 1; }
    n=$((n + 1))
done < <(cd "$WORK/old.taggram" && find . -type f | sort)
echo "same: $n taggrams"
n=0
while IFS= read -r f; do
    cmp -s "$WORK/old.cache/$f" "$WORK/new.cache/$f" || { echo "DIFFERENT: cache entry $f"; exit 1; }
    n=$((n + 1))
done < <(cd "$WORK/old.cache" && find . -name '*.pkl' | sort)
echo "same: $n cache entries (pickled bytes)"

line=$(tagger "$ROOT" embed "${CLIPS[@]}" --out "$WORK/old.cache" --workers 1 --no-progress)
echo "$line"
case $line in "embedded 0, skipped 10 "*) echo "same: the old cache serves the new code" ;; *) exit 1 ;; esac

head -n 4 "$WORK/old.csv" >"$WORK/resumed.csv"
cp "$WORK/old.csv.meta.json" "$WORK/resumed.csv.meta.json" 2>/dev/null || true
tagger "$ROOT" tag "${CLIPS[@]}" --model music --allow-other-embedding --workers 1 --no-progress \
    --out "$WORK/resumed.csv" --taggram "$WORK/resumed.taggram" --cache "$WORK/old.cache" >/dev/null
same "an old output cut to 3 rows, resumed by the new code" "$WORK/old.csv" "$WORK/resumed.csv"

tagger "$WORK/old" prepare gtzan "$SHARED/data/gtzan/genres" --out "$WORK/gtzan" --workers 1 --no-progress >/dev/null
tagger "$WORK/old" train "$WORK/gtzan" --run-dir "$WORK/run" --quiet >/dev/null 2>&1
run=$WORK/run
for side in old new; do
    tree=$([ $side = old ] && echo "$WORK/old" || echo "$ROOT")
    tagger "$tree" tag "${CLIPS[@]}" --model "$run" --workers 1 --no-progress --out "$WORK/run_$side.csv" \
        --cache "$WORK/old.cache" >/dev/null
done
same "a run folder trained by the old code, tagging" "$WORK/run_old.csv" "$WORK/run_new.csv"
echo "all same ($(($(date +%s) - started)) s; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); work in $WORK)"
