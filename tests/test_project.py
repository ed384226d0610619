"""The project's own promises: README commands, CI script, import hygiene."""

import ast
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def readme_commands():
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_command = readme_commands()[1]
    assert "pytest" in test_command
    ci_lines = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines()]
    assert test_command.strip() in ci_lines


def test_frontend_modules_do_not_import_tensorflow():
    """Decoding, caching, outputs, locks and config validation (`tagger-cloud submit`) never load TensorFlow."""
    modules = "tagger, tagger.embedding.audio, tagger.embedding.frontend, tagger.embedding.decode, tagger.embedding.cache, tagger.embedding.files, tagger.records, tagger.locks"
    check = "config.validate({'data': {'index': 'i', 'cache': 'c', 'vocabulary': 'v'}}, check_paths=False)"
    code = f"import sys, {modules}; from tagger.training import config; {check}; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# the steps of the flow, in order; a module may import its own step and the ones before it, never a later one
STEPS = ("embedding", "features", "training", "tagging", "distributed")


def _imports(path, module):
    """Absolute names of the tagger modules (and packages) a file imports, at any depth."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{a.name}" for a in node.names)


def _step(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "tagger" and parts[1] in STEPS else None


def test_no_import_runs_back_up_a_step():
    """embedding < features < training < tagging < distributed: no module imports a later step."""
    bad = []
    for path in sorted((ROOT / "tagger").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        here = _step(module)
        if here is None:
            continue
        for target in _imports(path, module):
            there = _step(target)
            if there is not None and STEPS.index(there) > STEPS.index(here):
                bad.append(f"{module} imports {target}")
    assert not bad, bad


def test_the_tree_is_lint_clean_and_formatted():
    """What .ci/run checks before the tests (settings in .ruff.toml); a lint error or an unformatted file fails."""
    for args in (["check", "."], ["format", "--check", "."]):
        done = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    ci = (ROOT / ".ci/run").read_text()
    assert "ruff check ." in ci and "ruff format --check ." in ci
