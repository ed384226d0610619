"""Check the unit tier's promise: a test of every tagger module and every command runs in it.

Usage (untimed, outside .ci/run)::

    python -m coverage run --source=tagger -m pytest -q -m unit -p no:cacheprovider
    python -m coverage json -o unit.json && python .ci/unit_tier.py unit.json

A module counts as tested when a line inside one of its functions ran; a command when the first line of its
``run*`` handler in ``tagger/cli/`` ran. Prints what is missing; exits 1 if anything is.
"""

import ast
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def missing(report):
    """(modules, commands) with nothing run in the unit tier, from a coverage.py JSON report."""
    ran = {(ROOT / k).resolve(): set(v["executed_lines"]) for k, v in report["files"].items()}  # relative: to ROOT
    modules, commands = [], []
    for path in sorted((ROOT / "tagger").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        functions = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)]
        lines = {s.lineno for f in functions for s in f.body}
        here = ran.get(path, set())
        if lines and not lines & here:
            modules.append(rel)
        if rel.startswith("tagger/cli/"):
            commands += [
                f"{rel}:{f.name}" for f in functions if f.name.startswith("run") and f.body[0].lineno not in here
            ]
    return modules, commands


def main(argv):
    modules, commands = missing(json.loads(pathlib.Path(argv[0]).read_text()))
    print("modules with no function run in the unit tier:", ", ".join(modules) or "none")
    print("command handlers not run in the unit tier:", ", ".join(commands) or "none")
    return 1 if modules or commands else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
