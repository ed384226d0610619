"""Lines covered in one coverage run and not in another: ``python .ci/coverage_diff.py BEFORE.json AFTER.json``.

Reads two ``coverage json`` reports (``bash .ci/coverage`` writes them) and prints each file's lines that BEFORE
executed and AFTER did not, with the source line, then the totals of both; exits 1 when any line was lost.
"""

import json
import pathlib
import sys


def executed(report):
    data = json.loads(pathlib.Path(report).read_text())
    return {name: set(f["executed_lines"]) for name, f in data["files"].items()}, data["totals"]


def main(argv):
    (before, before_totals), (after, after_totals) = executed(argv[0]), executed(argv[1])
    lost = 0
    for name in sorted(before):
        gone = sorted(before[name] - after.get(name, set()))
        if gone:
            source = pathlib.Path(name).read_text().splitlines() if pathlib.Path(name).exists() else []
            for line in gone:
                text = source[line - 1].strip() if line <= len(source) else "?"
                print(f"{name}:{line}: {text}")
            lost += len(gone)
    gained = sum(len(after[name] - before.get(name, set())) for name in after)
    for label, totals in (("before", before_totals), ("after", after_totals)):
        print(
            f"{label}: {totals['covered_lines']} of {totals['num_statements']} lines ({totals['percent_covered']:.2f} %)"
        )
    print(f"lost {lost} lines, gained {gained}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
