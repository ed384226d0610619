"""The documentation: each tutorial runs as written (in the test's process, on fixture weights and synthetic clips);
the README stays short, links only to what exists, and the pages' commands and samples match the code."""

import os
import re
import shlex
import subprocess
import sys

import pytest
from helpers import ROOT, write_audio

DOCS = ROOT / "docs"
TUTORIALS = sorted((DOCS / "tutorials").glob("*.md"))


def blocks(page, language):
    """The fenced blocks of one language in a page, in order, as text."""
    return re.findall(rf"```{language}\n(.*?)\n```", page.read_text(), flags=re.S)


def commands(page):
    """Each shell command of a page's ``bash`` blocks: continuation lines joined, comments dropped, split as a
    shell splits it (variables are expanded by the caller, from the environment the tutorial built)."""
    found = []
    for block in blocks(page, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                found.append(words)
    return found


def _clips(folder, n, seed):
    for i, name in enumerate(("first", "second", "third", "fourth")[:n]):
        write_audio(folder / f"{name}.wav", 3.0, freq=220.0 * (i + 1 + seed), seed=seed + i)


def _set_up(name, tmp_path, fake_gcs):
    """The files a tutorial's 'What you need' names, made small; tables the page prints are written from it."""
    page = DOCS / "tutorials" / f"{name}.md"
    _clips(tmp_path / "clips", 2, 0)
    _clips(tmp_path / "new_clips", 2, 5)
    for label, seed in (("blues", 0), ("rock", 3)):
        for i in range(6):
            write_audio(tmp_path / "my_clips" / label / f"{label}{i}.wav", 2.0, freq=150.0 * (seed + i + 1), seed=i)
            write_audio(fake_gcs / "my-bucket/audio/mine" / label / f"{label}{i}.wav", 1.0, seed=i)
    for table in blocks(page, "text"):
        if table.startswith("path,labels"):
            (tmp_path / "truth.csv").write_text(table + "\n")
        elif table.startswith("truth,model"):
            (tmp_path / "map.csv").write_text(table + "\n")


# Beam's DirectRunner is the whole-job tier; `cloud/tagger-cloud submit` builds a wheel from the checkout, so it
# shares tests/test_cloud.py's worker (two builds at once would write the same build/ folder). The marks stay in the
# decorator, where tests/test_project.py reads which tests are slow
@pytest.mark.integration
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            p.stem,
            marks={"beam": pytest.mark.slow, "cloud": pytest.mark.xdist_group("builds-the-checkout")}.get(p.stem, ()),
        )
        for p in TUTORIALS
    ],
)
def test_each_tutorial_runs_as_written(name, tmp_path, monkeypatch, fake, weights_dir):
    """Every command of the tutorial's bash blocks, in order, from one folder: `tagger ...` through
    ``tagger.cli.main`` in this process (exit status 0 each), `export` into the environment, `cloud/tagger-cloud`
    with the recording gcloud; the fixture weights are the session's (what `python -m tagger.testing fixture`
    writes, made once)."""
    from tagger import cli, testing

    page = DOCS / "tutorials" / f"{name}.md"
    _set_up(name, tmp_path, tmp_path / "gcs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWD", str(tmp_path))
    ran = []
    for words in commands(page):
        words = [os.path.expandvars(w) for w in words]
        if words[0] == "export":
            for assignment in words[1:]:
                key, value = assignment.split("=", 1)
                monkeypatch.setenv(key, value)
        elif words[:3] == ["python", "-m", "tagger.testing"]:
            assert words[3:] == ["fixture"], words
            # what `python -m tagger.testing fixture` writes (write_fixtures: seed 0's weights as a V1 checkpoint,
            # seed 0's PCA parameters), the checkpoint linked from the session's copy instead of written again (18 s)
            (tmp_path / "fixture").mkdir()
            for f in (weights_dir / "v1").iterdir():
                os.symlink(f, tmp_path / "fixture" / f.name)
            testing.write_pca_params(str(tmp_path / "fixture" / "vggish_pca_params.npz"), seed=0)
        elif words[0] == "tagger":
            assert cli.main(words[1:]) == 0, words
        elif words[0] == "cloud/tagger-cloud":
            done = subprocess.run(
                [str(ROOT / words[0]), *words[1:]],
                env={**os.environ, **{k: fake[0][k] for k in ("PATH", "FAKE_LOG", "FAKE_GCS")}},
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, (words, done.stdout[-2000:], done.stderr[-2000:])
        else:
            raise AssertionError(f"{page.name}: a command the tutorial test does not know how to run: {words}")
        ran.append(words[0])
    assert ran.count("tagger") + ran.count("cloud/tagger-cloud") >= 3, ran


def test_the_readme_is_short_and_every_page_it_links_exists():
    """At most 10,240 bytes (the manual is the docs site); each relative link names a file of the checkout."""
    readme = ROOT / "README.md"
    assert len(readme.read_bytes()) <= 10240, len(readme.read_bytes())
    links = [link for link in re.findall(r"\]\(([^)#\s]+)[^)]*\)", readme.read_text()) if "://" not in link]
    assert len(links) >= 5, links
    assert [link for link in links if not (ROOT / link).exists()] == []


def test_every_page_is_in_the_navigation():
    """mkdocs.yml's nav names each page of docs/ (the generated ones included) and only pages that exist."""
    nav = re.findall(r":\s+(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), flags=re.M)
    generated = {"reference/cli.md", "reference/models.md"}
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert sorted(set(nav)) == sorted(pages | generated)


EXAMPLES = [
    "tagger.tagging.api.Tagger",
    "tagger.embedding.vggish.extractor.Embedder",
    "tagger.embedding.embed.embed_files",
    "tagger.embedding.registry.kinds",
    "tagger.records.read_records",
]


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_docstring_examples_run(name, tmp_path, monkeypatch, ckpt_path, pca_params):
    """The numpydoc Examples of the five most used entry points, run as doctests with the names they state
    (``WEIGHTS``: the fixture weights, ``PCA``: the official PCA parameters, ``CLIPS``, ``CACHE``, ``TMP``)."""
    import doctest
    import importlib

    module_name, _, attr = name.rpartition(".")
    obj = getattr(importlib.import_module(module_name), attr)
    _clips(tmp_path / "clips", 2, 0)
    monkeypatch.chdir(tmp_path)
    names = {"WEIGHTS": ckpt_path, "PCA": str(pca_params), "CLIPS": str(tmp_path / "clips")}
    names.update({"CACHE": str(tmp_path / "cache"), "TMP": str(tmp_path)})
    tests = doctest.DocTestFinder(recurse=False).find(obj, name, globs={**vars(sys.modules[module_name]), **names})
    assert tests and tests[0].examples, f"{name} has no Examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_the_readme_quality_figures_are_the_cards():
    """Each figure in the README's table of shipped models is in the model card summary of a model its row names."""
    from tagger.training import bundle

    summaries = bundle.shipped_summaries()
    table = (ROOT / "README.md").read_text().split("## Shipped models", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) >= 5, rows
    for row in rows:
        names = [n for n in re.findall(r"`([^`]+)`", row.split("|")[1]) if n in summaries]
        figures = re.findall(r"\d+\.\d+", row.split("|")[3])
        assert names and figures, row
        assert all(any(f in summaries[n] for n in names) for f in figures), (row, {n: summaries[n] for n in names})


def test_the_offline_message_the_getting_started_page_shows_is_the_codes(monkeypatch, tmp_path):
    """Getting started shows what `tagger tag` prints without network or weights: each piece of it (between the
    page's '...') is in the message the reader raises for an unreachable TF Hub."""
    from tagger.embedding.vggish import network
    from tagger.exceptions import DataError

    shown = re.search(
        r"```\n(tagger tag: error: cannot fetch VGGish weights[^\n]*)\n```", (DOCS / "getting-started.md").read_text()
    )
    assert shown, "getting-started.md's offline message"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    with pytest.raises(DataError) as info:
        network.read_weights(network.params.VGGISH_HUB_HANDLE.replace("tfhub.dev", "tfhub.invalid"))
    message = "tagger tag: error: " + str(info.value).replace("tfhub.invalid", "tfhub.dev")
    pieces = [p.strip(" .(<") for p in re.split(r"\.\.\.|<urlopen error", shown.group(1)) if p.strip(" .(<)>")]
    assert pieces and all(p in message for p in pieces), (pieces, message)
