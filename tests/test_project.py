"""The project's own promises: README commands, CI script, import hygiene."""

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
    modules = (
        "tagger, tagger.audio, tagger.frontend, tagger.decode, tagger.cache, tagger.files, tagger.records, tagger.locks"
    )
    check = "config.validate({'data': {'index': 'i', 'cache': 'c', 'vocabulary': 'v'}}, check_paths=False)"
    code = f"import sys, {modules}; from tagger import config; {check}; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_tree_is_lint_clean_and_formatted():
    """What .ci/run checks before the tests (settings in .ruff.toml); a lint error or an unformatted file fails."""
    for args in (["check", "."], ["format", "--check", "."]):
        done = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    ci = (ROOT / ".ci/run").read_text()
    assert "ruff check ." in ci and "ruff format --check ." in ci
