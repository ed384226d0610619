#!/usr/bin/env bash
# Each tests/planted/*.diff plants a bug that one rewritten test must catch: its first line names the test
# ("expect-fail: tests/FILE.py::TEST"). Each diff is applied to a scratch copy of the checkout (git worktree, the
# working tree's own files untouched), the named test is run there, and it must FAIL. Prints one line per diff;
# exits 1 if any planted bug went unnoticed. Usage: bash tests/planted/run.sh [DIFF ...]
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
root=$PWD
scratch=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$scratch/tree" >/dev/null 2>&1; rm -rf "$scratch"' EXIT
git worktree add --detach --quiet "$scratch/tree" HEAD
missed=0
diffs=("$@")
[[ ${#diffs[@]} -eq 0 ]] && diffs=(tests/planted/*.diff)
for diff in "${diffs[@]}"; do
  test_id=$(head -1 "$diff" | sed -n 's/^expect-fail: //p')
  git -C "$scratch/tree" checkout --quiet -- . && git -C "$scratch/tree" clean -fdq
  if ! git -C "$scratch/tree" apply "$root/$diff"; then
    echo "$diff: does not apply"; missed=1; continue
  fi
  if (cd "$scratch/tree" && COLUMNS=300 TAGGER_SHARED="$root/../shared" TAGGER_TEST_CACHE="$root/.test-cache" \
      python -m pytest -q -p no:cacheprovider "$test_id" >"$scratch/log" 2>&1); then
    echo "$diff: $test_id PASSED on the planted bug (not caught)"; missed=1
  else
    echo "$diff: $test_id fails on the planted bug, as it should:"
    grep -E "^(FAILED|ERROR) " "$scratch/log" | cut -c1-300 | sed 's/^/    /'
  fi
done
exit "$missed"
