"""Lines covered in one coverage run and not in another: ``python .ci/coverage_diff.py BEFORE.json AFTER.json``.

Reads two ``coverage json`` reports (``bash .ci/coverage`` writes them) and prints each file's lines that BEFORE
executed and AFTER did not, with the source line, then the totals of both; exits 1 when any line was lost.

When the code changed between the two runs, give the checkout BEFORE measured (``--before-source DIR``, e.g. a
``git worktree`` of the old commit): each of its lines is then followed to its place in this checkout's file
(``difflib``'s matching blocks). A line the change removed or rewrote has no place; it is listed apart, as code
that changed, not as coverage lost.
"""

import argparse
import difflib
import json
import pathlib
import sys


def executed(report):
    data = json.loads(pathlib.Path(report).read_text())
    return {name: set(f["executed_lines"]) for name, f in data["files"].items()}, data["totals"]


def line_map(old_lines, new_lines):
    """Old line number (1-based) -> new line number, for the lines difflib finds unchanged."""
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    return {a + 1 + k: b + 1 + k for a, b, size in matcher.get_matching_blocks() for k in range(size)}


def _source(path):
    return path.read_text().splitlines() if path.exists() else []


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--before-source", type=pathlib.Path, help="the checkout the BEFORE report measured")
    args = parser.parse_args(argv)
    (before, before_totals), (after, after_totals) = executed(args.before), executed(args.after)
    lost, changed, mapped = 0, [], {}
    for name in sorted(before):
        source = _source(pathlib.Path(name))
        old_source = mapping = None
        if args.before_source is not None:
            old_source = _source(args.before_source / name)
            mapping = line_map(old_source, source)
        gone = []
        for line in sorted(before[name]):
            new = line if mapping is None else mapping.get(line)
            if new is None:
                changed.append(f"{name}:{line} (before): {old_source[line - 1].strip()}")
            else:
                mapped.setdefault(name, set()).add(new)
                if new not in after.get(name, set()):
                    gone.append(new)
        for line in gone:
            text = source[line - 1].strip() if line <= len(source) else "?"
            print(f"{name}:{line}: {text}")
        lost += len(gone)
    if changed:
        print(f"\n{len(changed)} lines BEFORE executed that the change removed or rewrote (not compared):")
        print("\n".join(changed))
    gained = sum(len(after[name] - mapped.get(name, set())) for name in after)
    for label, totals in (("before", before_totals), ("after", after_totals)):
        print(
            f"{label}: {totals['covered_lines']} of {totals['num_statements']} lines ({totals['percent_covered']:.2f} %)"
        )
    print(f"lost {lost} lines, gained {gained}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
