"""The project's own promises: README and docs commands, CI script, import hygiene."""

import ast
import graphlib
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def readme_commands():
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_command = readme_commands()[1]
    assert "pytest" in test_command
    ci_lines = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines()]
    assert test_command.strip() in ci_lines


#: what the device tool sends to a GPU machine: the tracked files and the GPU check's wheels (benchmarks/gpu_wheels.sh,
#: 5.4 MiB with the lock of 2026-12) must fit its 64 MiB together, or the GPU check cannot run at all
TRAVEL_LIMIT_MIB, WHEELS_ROOM_MIB = 64, 8


@pytest.mark.integration  # asks git for the tracked files
def test_the_tracked_files_leave_room_for_the_gpu_checks_wheels():
    """A shipped head of 30 MB more would stop the GPU check from travelling: ship such a head on the Hub instead."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: no tracked files to weigh")
    sizes = {p: (ROOT / p).stat().st_size for p in listed.stdout.decode().split("\0") if p and (ROOT / p).is_file()}
    mib = sum(sizes.values()) / 2**20
    largest = sorted(sizes, key=sizes.get, reverse=True)[:3]
    assert mib <= TRAVEL_LIMIT_MIB - WHEELS_ROOM_MIB, f"{mib:.1f} MiB tracked; the largest: {largest}"


@pytest.mark.integration
def test_frontend_modules_do_not_import_tensorflow():
    """Decoding, caching, outputs, locks and config validation (`tagger-cloud submit`) never load TensorFlow."""
    modules = "tagger, tagger.embedding.audio, tagger.embedding.vggish.frontend, tagger.embedding.decode, tagger.embedding.cache, tagger.embedding.files, tagger.records, tagger.resumable, tagger.tables, tagger.console, tagger.locks"
    check = "config.validate({'data': {'index': 'i', 'cache': 'c', 'vocabulary': 'v'}}, check_paths=False)"
    code = f"import sys, {modules}; from tagger.training import config; {check}; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# the steps of the flow, in order; a module may import its own step and the ones before it, never a later one
STEPS = ("embedding", "training", "datasets", "tagging", "distributed", "cli", "jobs")
# the shared ground floor, importable from every step; it imports no step (the resumable outputs take the rule that
# compares two runs' settings from their caller)
GROUND = ("exceptions", "version", "records", "resumable", "tables", "console", "locks", "backend")
# modules that import a heavy library (Keras, pescador, scikit-learn, Apache Beam) at their top: the only tagger
# modules imported inside functions, so that loading a light module never loads them
HEAVY_LIBRARIES = {"tensorflow", "keras", "apache_beam", "pyarrow", "pescador", "sklearn"}
LAZY_MODULES = {
    "tagger.training.layers",
    "tagger.training.finetune",
    "tagger.training.streams",
    "tagger.training.metrics",
    "tagger.distributed.pipeline",
    "tagger.distributed.transforms",
    "tagger.distributed.remote",
}


def _modules():
    for path in sorted((ROOT / "tagger").rglob("*.py")):
        yield path, ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _resolve(node, path, module):
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))
    return node.module or ""


def _imports(path, module, *, where=ast.walk):
    """Absolute names of the modules (and packages) a file imports, at any depth (or where ``where`` looks)."""
    tree = ast.parse(path.read_text())
    for node in where(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, path, module)
            yield target
            yield from (f"{target}.{a.name}" for a in node.names)


def _step(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "tagger" and parts[1] in STEPS else None


def test_every_package_of_tagger_is_a_step_or_the_ground_floor():
    """A new package or top-level module must be placed: in a step, or on the ground floor (or the front door)."""
    placed = set(STEPS) | set(GROUND) | {"__init__", "__main__", "testing", "models"}
    found = {p.name.removesuffix(".py") for p in (ROOT / "tagger").iterdir() if p.suffix == ".py" or p.is_dir()}
    assert found - {"__pycache__"} <= placed, found - placed


def test_no_import_runs_back_up_a_step():
    """embedding < training < datasets < tagging < distributed < cli < jobs: no module imports a later step."""
    bad = []
    for path, module in _modules():
        here = _step(module)
        if here is None:
            continue
        for target in _imports(path, module):
            there = _step(target)
            if there is not None and STEPS.index(there) > STEPS.index(here):
                bad.append(f"{module} imports {target}")
    assert not bad, bad


def test_no_import_circle():
    """No module imports (at its top or inside a function) one that imports it back, however far round.

    An import of the module's own package (``from .. import x``) is no edge: the package is always loaded first.
    """
    modules = {module: path for path, module in _modules()}
    graph = {
        module: {t for t in _imports(path, module) if t in modules and t != module and not module.startswith(t + ".")}
        for module, path in modules.items()
    }
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import circle: {' -> '.join(exc.args[1])}")


def test_the_ground_floor_imports_no_step():
    bad = []
    for name in GROUND:
        path = ROOT / "tagger" / f"{name}.py"
        for target in _imports(path, f"tagger.{name}"):
            if _step(target) is not None:
                bad.append(f"tagger.{name} imports {target}")
    assert not bad, bad


def _top_level(tree):
    return [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]


def _in_functions(tree):
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from (n for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))


def test_tagger_modules_are_imported_at_the_top():
    """Each file's header lists what it depends on: a tagger module is imported inside a function only when it
    loads a heavy library at its top (LAZY_MODULES, checked here too); the package's front door stays lazy."""
    bad = []
    for path, module in _modules():
        if module == "tagger":  # `import tagger` (every decode worker does) must not load the tagging API
            continue
        for node in _in_functions(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = {a.name for a in node.names}
            else:
                base = _resolve(node, path, module)
                targets = {base} | {f"{base}.{a.name}" for a in node.names}
            ours = {t for t in targets if t.split(".")[0] == "tagger"}
            if ours and not ours & LAZY_MODULES:
                bad.append(f"{module}:{node.lineno} imports {sorted(ours)[0]} inside a function")
    assert not bad, bad
    for lazy in LAZY_MODULES:
        path = ROOT / (lazy.replace(".", "/") + ".py")
        top = {t.split(".")[0] for t in _imports(path, lazy, where=_top_level)}
        assert top & HEAVY_LIBRARIES, f"{lazy} loads no heavy library at its top: import it at the top of its users"


def test_cli_commands_are_short():
    """The command modules are thin: no function over 60 lines (the work is in the library)."""
    long = []
    for path in sorted((ROOT / "tagger/cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name != "add_parser" and not node.name.startswith("add_"):
                if node.end_lineno - node.lineno + 1 > 60:
                    long.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


@pytest.mark.integration
def test_the_preprocess_scripts_are_the_prepare_command():
    """`python preprocess/<dataset>.py` runs `tagger prepare <dataset>` (the adapters live in tagger.datasets)."""
    for dataset in ("audioset", "gtzan", "mtt", "folder"):
        out = subprocess.run(
            [sys.executable, str(ROOT / "preprocess" / f"{dataset}.py"), "--help"],
            capture_output=True,
            text=True,
            cwd=ROOT.parent,
        )
        assert out.returncode == 0 and "usage: tagger prepare" in out.stdout, out.stderr[-2000:]
    assert not (ROOT / "preprocess" / "__init__.py").exists()  # scripts, not a package that could be installed


def test_one_version_read_by_the_package_and_setup():
    from tagger import __version__
    from tagger.version import __version__ as version

    setup = (ROOT / "setup.py").read_text()
    assert __version__ == version and 'open("tagger/version.py"' in setup and 'name="vggish-tagger"' in setup
    assert "__version__ = " not in (ROOT / "tagger/__init__.py").read_text()


def _marked(decorator, mark):
    """Whether a decorator holds ``pytest.mark.<mark>``: itself, or on some of its parameters (``pytest.param``)."""
    return any(
        isinstance(node, ast.Attribute) and node.attr == mark and ast.unparse(node.value) == "pytest.mark"
        for node in ast.walk(decorator)
    )


def marked_tests(mark):
    """The test functions of ``tests/`` marked ``mark``, read from the source (no second pytest collection)."""
    found = set()
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                if any(_marked(d, mark) for d in node.decorator_list):
                    found.add(node.name)
    return found


def test_the_development_page_names_every_slow_test_and_why():
    """The development page's table (docs/development.md) lists each test marked slow (so the fast lane's gaps are
    written down)."""
    slow = marked_tests("slow")
    assert len(slow) > 20, slow
    development = (ROOT / "docs" / "development.md").read_text()
    missing = [name for name in sorted(slow) if f"`{name}`" not in development and f"::{name}`" not in development]
    assert not missing, f"slow tests the development page's table does not name: {missing}"


def test_setup_states_ranges_and_the_lock_holds_every_package():
    """setup.py gives ranges (no exact pin: tagger installs beside other packages); the lock (.ci/constraints.txt,
    made by .ci/lock.sh) fixes an allowed version of each requirement of every extra."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("install_requires", "extras_require")}
    wanted = [Requirement(r) for r in kw["install_requires"] + [r for rs in kw["extras_require"].values() for r in rs]]
    pinned = [str(r) for r in wanted if any(s.operator == "==" for s in r.specifier)]
    assert not pinned, f"exact pins in setup.py (they belong in the lock): {pinned}"
    assert all(r.specifier for r in wanted), [str(r) for r in wanted if not r.specifier]  # a tested lower bound each
    lock = read_lock((ROOT / ".ci/constraints.txt").read_text())
    for r in wanted:
        name = canonicalize_name(r.name)
        assert name in lock and lock[name] in r.specifier, f"{r}: the lock holds {lock.get(name)}; run .ci/lock.sh"


def test_the_documented_api_is_type_checked_and_the_wheel_says_so():
    """Every module of the API reference (docs/reference/api.md's ``::: tagger...``) is one mypy checks (pyproject.toml,
    every function annotated), and the package data ships the ``py.typed`` marker."""
    import tomllib

    checked = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"])
    documented = re.findall(r"^::: (tagger\S*)", (ROOT / "docs/reference/api.md").read_text(), flags=re.M)
    modules = set()
    for name in documented:
        parts = name.split(".")
        while parts and not (ROOT / ("/".join(parts) + ".py")).exists():
            parts.pop()  # tagger.tagging.api.Tagger -> tagger/tagging/api.py
        modules.add("/".join(parts) + ".py")
    assert len(modules) >= 8 and modules <= checked, sorted(modules - checked)
    assert (ROOT / "tagger" / "py.typed").exists() and '"py.typed"' in (ROOT / "setup.py").read_text()


def read_lock(text):
    """The lock's text (.ci/constraints.txt) as canonical name -> version."""
    from packaging.utils import canonicalize_name

    pins = (line.split("==") for line in text.splitlines() if "==" in line and not line.startswith(("#", " ")))
    return {canonicalize_name(name): version.strip() for name, version in pins}


def lock_problems(lock, extras, *, root="vggish-tagger"):
    """Resolve ``root[extras]`` as pip would with the lock as constraints, from the installed packages' metadata.

    Under ``-c LOCK`` each package may take only the lock's version, so a resolve picks exactly the lock's versions,
    or fails, wherever a package it reaches is missing from the lock or a requirement on the way excludes the
    locked version. Walks every requirement reachable from ``root`` with ``extras`` (markers evaluated for this
    interpreter and platform, a requirement's own extras followed) and returns (reached names, problems).
    """
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    problems, todo, seen = [], [(root, frozenset(extras), "the root")], set()
    while todo:
        name, wanted, via = todo.pop()
        key = canonicalize_name(name)
        if (key, wanted) in seen:
            continue
        seen.add((key, wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name} (required by {via}) is not installed")
            continue
        if key != root and lock.get(key) != dist.version:
            problems.append(f"{name}: the lock holds {lock.get(key)}, installed {dist.version} (required by {via})")
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in {"", *wanted}):
                continue
            dep = canonicalize_name(req.name)
            if dep not in lock:
                problems.append(f"{req.name} (required by {name}) is not in the lock")
            elif not req.specifier.contains(lock[dep], prereleases=True):
                problems.append(f"{name} requires {req}: the lock's {lock[dep]} is outside it")
            todo.append((req.name, frozenset(req.extras), name))
    return {key for key, _ in seen} - {root}, problems


def test_with_the_lock_adding_an_extra_changes_nothing():
    """The base set, and the base set with every extra, resolved with the lock as constraints (.ci/constraints.txt;
    CI installs it): every package either reaches is in the lock, every requirement on the way allows the lock's
    version, and the installed version is the lock's. Then no base package can take another version with the
    extras, and a fresh ``pip install -c .ci/constraints.txt`` resolves to the lock, on any set of extras.

    Read from the installed packages' metadata, offline: the earlier ``pip install --dry-run`` form of this test
    downloaded TensorFlow's 572 MB wheel twice a run (this registry serves no separate metadata) and failed CI once
    when /tmp filled up. A lock with a package missing and another moved is caught (the second half).
    """
    from importlib import metadata

    lock = read_lock((ROOT / ".ci" / "constraints.txt").read_text())
    extras = metadata.metadata("vggish-tagger").get_all("Provides-Extra") or []
    assert {"beam", "docs", "jax", "test"} <= set(extras), extras
    base, problems = lock_problems(lock, [])
    every, more = lock_problems(lock, extras)
    assert not problems + more, f"run .ci/lock.sh, then reinstall with -c .ci/constraints.txt: {problems + more}"
    assert {"tensorflow", "numpy", "keras"} <= base < every and {"apache-beam", "jax", "pytest"} <= every, base
    # the check itself: drop numpy from the lock and move keras to a version outside setup.py's range
    broken = {name: version for name, version in lock.items() if name != "numpy"} | {"keras": "2.15.0"}
    _, problems = lock_problems(broken, [])
    assert any("numpy" in p and "not in the lock" in p for p in problems), problems
    assert any("keras" in p and "outside" in p for p in problems), problems


def test_a_cached_fixture_folder_is_built_once_and_never_served_changed(tmp_path, monkeypatch):
    """tests/fixture_cache.py: one build per key; a changed file or a killed build is built again, not served."""
    import fixture_cache

    monkeypatch.setattr(fixture_cache, "CACHE", tmp_path / "cache")
    builds = []

    def build(folder):
        builds.append(folder)
        (folder / "sub").mkdir()
        (folder / "sub" / "w.bin").write_bytes(b"weights")

    first = fixture_cache.cached_folder("w", "key 1", build)
    assert fixture_cache.cached_folder("w", "key 1", build) == first and len(builds) == 1
    assert (first / "sub" / "w.bin").read_bytes() == b"weights"
    assert fixture_cache.cached_folder("w", "key 2", build) != first and len(builds) == 2
    (first / "sub" / "w.bin").chmod(0o644)
    (first / "sub" / "w.bin").write_bytes(b"changed by a test")
    again = fixture_cache.cached_folder("w", "key 1", build)
    assert again == first and len(builds) == 3 and (again / "sub" / "w.bin").read_bytes() == b"weights"

    def killed(folder):
        (folder / "half").write_text("")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fixture_cache.cached_folder("k", "key", killed)
    assert fixture_cache.cached_folder("k", "key", build) and len(builds) == 4


def test_the_coverage_diff_follows_lines_across_a_change(tmp_path, monkeypatch, capsys):
    """`.ci/coverage_diff.py`: a line covered before and not after is lost, wherever the change moved it; a line
    the change rewrote is listed apart; the exit status says whether anything was lost."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("coverage_diff", ROOT / ".ci/coverage_diff.py")
    diff = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diff)
    old, new = tmp_path / "old", tmp_path / "new"
    (old / "pkg").mkdir(parents=True)
    (new / "pkg").mkdir(parents=True)
    (old / "pkg/m.py").write_text("a = 1\nb = 2\nc = 3\nd = 4\n")
    (new / "pkg/m.py").write_text("added = 0\na = 1\nb = 20\nc = 3\nd = 4\n")  # b rewritten, the rest moved down

    def report(path, lines, statements):
        totals = {"covered_lines": len(lines), "num_statements": statements, "percent_covered": 100}
        path.write_text(json.dumps({"files": {"pkg/m.py": {"executed_lines": lines}}, "totals": totals}))
        return str(path)

    before = report(tmp_path / "before.json", [1, 2, 3, 4], 4)
    monkeypatch.chdir(new)
    assert diff.main([before, report(tmp_path / "all.json", [1, 2, 3, 4, 5], 5), "--before-source", str(old)]) == 0
    assert "1 lines BEFORE executed that the change removed or rewrote" in capsys.readouterr().out
    # d (line 4 before, 5 after) no longer runs: lost under its new number; without the mapping, line 4 is compared
    assert diff.main([before, report(tmp_path / "some.json", [1, 2, 3, 4], 5), "--before-source", str(old)]) == 1
    assert "pkg/m.py:5: d = 4" in capsys.readouterr().out
    assert diff.main([before, report(tmp_path / "some.json", [1, 2, 3, 4], 5)]) == 0


def test_the_docs_pandas_recipes_read_back_any_file_name(tmp_path):
    """Each `pandas.read_csv(path, ...)` the README and the docs pages give, run as written on an errors file and a tag output whose
    clip names are not UTF-8 or hold a tab and a newline: every name comes back byte for byte."""
    import os

    import pandas

    from tagger.resumable import ResumableOutput

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    text = "\n".join(p.read_text() for p in pages)
    recipes = sorted(set(re.findall(r"`(pandas\.read_csv\(path[^`]*\))`", text)))
    assert len(recipes) >= 2, recipes
    names = [b"caf\xe9 \xff.wav", b"tab\tand\nnewline.wav", b"plain.wav"]
    out, errors = tmp_path / "tags.csv", tmp_path / "tags.csv.errors.tsv"
    with ResumableOutput(str(out), kind="csv", settings={}, compare=lambda a, b: [], fieldnames=["path", "p"]) as o:
        for name in names:
            o.row({"path": os.fsdecode(name), "p": 0.5})
            o.error(os.fsdecode(name), "AudioError: bad")
    for recipe in recipes:
        path = str(errors if "sep=" in recipe else out)
        df = eval(recipe, {"pandas": pandas, "path": path})  # the page's line, verbatim
        assert [os.fsencode(p) for p in df["path"]] == names, recipe


@pytest.mark.integration
def test_the_docs_sample_of_tags_csv_is_what_tag_writes(tmp_path, monkeypatch, gtzan_files, mtt_clip, pca_params):
    """The tagging guide's `tagger tag sample ...` and `cat tags.csv` (docs/guide/tagging.md), rerun as printed on the same two clips with the
    fixture weights: the same summary line, columns, paths and tags, and probabilities to the printed digits."""
    import csv
    import io
    import os
    import shlex
    import shutil

    from tagger import cli
    from tagger.testing import write_fixtures

    found = re.search(
        r"```\n\$ (tagger tag sample [^\n]*)\n([^\n]*)\n\$ cat tags.csv\n(.*?)\n```",
        (ROOT / "docs" / "guide" / "tagging.md").read_text(),
        re.S,
    )
    assert found, "the tagging guide's sample of tags.csv"
    command, summary, table = found.groups()
    (tmp_path / "sample").mkdir()
    for clip in (gtzan_files[0], mtt_clip):
        os.symlink(clip, tmp_path / "sample" / clip.name)
    write_fixtures(str(tmp_path / "fixture"))  # what `python -m tagger.testing fixture` writes
    shutil.copy(pca_params, tmp_path / "vggish_pca_params.npz")
    monkeypatch.chdir(tmp_path)
    assert cli.main([*shlex.split(command)[1:], "--no-progress"]) == 0
    want, got = (list(csv.reader(io.StringIO(t))) for t in (table + "\n", (tmp_path / "tags.csv").read_text()))
    assert got[0] == want[0] and len(got) == len(want)
    for g, w in zip(got[1:], want[1:]):
        numbers = [i for i, name in enumerate(want[0]) if name.startswith("p_") or name == "duration"]
        assert [x for i, x in enumerate(g) if i not in numbers] == [x for i, x in enumerate(w) if i not in numbers]
        assert all(abs(float(g[i]) - float(w[i])) <= 2e-4 for i in numbers), (g, w)
    assert summary.startswith("tagged 2, skipped 0")
