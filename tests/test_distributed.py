"""`tagger embed/tag --runner beam` (Apache Beam's DirectRunner) against the local path on the same files."""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import HEAD_LABELS, NOT_AUDIO, write_audio, write_head_bundle

from tagger import cli
from tagger.embedding import cache

pytest.importorskip("apache_beam", reason='the Beam path needs the extra: pip install -e ".[beam]"')

LABELS = HEAD_LABELS


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, gtzan_files, mtt_clip):
    """Three GTZAN clips (.au), the MTT clip (.mp3), a corrupt and an empty file, and awkward names and duplicate
    basenames: about 100 patches, so that network batches span tracks and a track spans batches (three clips of
    the ten: every further 30-s clip adds two network passes per test and no new case)."""
    folder = tmp_path_factory.mktemp("corpus")
    for path in gtzan_files[:3] + [mtt_clip]:
        target = folder / path.parent.name / path.name
        target.parent.mkdir(exist_ok=True)
        target.symlink_to(path)
    write_audio(folder / "with space" / "ünïcode é" / "same.wav", 2.5, freq=330.0, seed=3)
    write_audio(folder / "other" / "same.wav", 2.5, freq=2000.0, seed=4)
    (folder / "bad").mkdir()
    (folder / "bad" / "corrupt.mp3").write_bytes(NOT_AUDIO)
    (folder / "bad" / "empty.wav").write_bytes(b"")
    return folder


def entries(folder):
    return {p.relative_to(folder).as_posix(): cache.read_entry(str(p)) for p in sorted(folder.rglob("*.pkl"))}


@pytest.mark.slow
def test_beam_embed_equals_tagger_embed(corpus, ckpt_path, tmp_path, capsys):
    common = [str(corpus), "--weights", ckpt_path, "--root", str(corpus), "--no-progress"]
    assert cli.main(["embed", *common, "--out", str(tmp_path / "local"), "--workers", "1"]) == cli.EXIT_SOME_FAILED
    assert cli.main(["embed", *common, "--out", str(tmp_path / "beam"), "--runner", "beam"]) == cli.EXIT_SOME_FAILED
    assert "embedded 6, skipped 0 (already cached), failed 2 of 8" in capsys.readouterr().out
    local, beam = entries(tmp_path / "local"), entries(tmp_path / "beam")
    assert sorted(beam) == sorted(local) and len(beam) == 6
    assert "with space/ünïcode é/same.wav.pkl" in beam and "other/same.wav.pkl" in beam
    for key, want in local.items():
        got = beam[key]
        np.testing.assert_allclose(got["embedding"], want["embedding"], rtol=0, atol=1e-5)
        np.testing.assert_array_equal(got["timestamps"], want["timestamps"])
        for field in ("kind", "frontend", "weights", "fingerprint", "duration", "source"):
            assert got[field] == want[field], (key, field)
    assert not np.allclose(
        beam["other/same.wav.pkl"]["embedding"], beam["with space/ünïcode é/same.wav.pkl"]["embedding"]
    )
    errors = pd.read_csv(tmp_path / "beam" / "errors.tsv", sep="\t")
    assert sorted(os.path.basename(p) for p in errors["path"]) == ["corrupt.mp3", "empty.wav"]

    # a second run re-embeds nothing
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "beam").rglob("*.pkl")}
    assert cli.main(["embed", *common, "--out", str(tmp_path / "beam"), "--runner", "beam"]) == cli.EXIT_SOME_FAILED
    assert "embedded 0, skipped 6 (already cached), failed 2 of 8" in capsys.readouterr().out
    assert mtimes == {p: p.stat().st_mtime_ns for p in (tmp_path / "beam").rglob("*.pkl")}


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    return write_head_bundle(tmp_path_factory.mktemp("beamhead"), seed=2)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_beam_tag_equals_tagger_tag(corpus, head, ckpt_path, tmp_path, fmt):
    common = [str(corpus), "--model", str(head), "--weights", ckpt_path, "--root", str(corpus), "--no-progress"]
    local_fmt = "csv" if fmt == "parquet" else fmt  # Parquet is the Beam path's; its columns are the CSV's
    assert (
        cli.main(["tag", *common, "--out", str(tmp_path / f"local.{local_fmt}"), "--workers", "1"])
        == cli.EXIT_SOME_FAILED
    )
    assert (
        cli.main(
            [
                "tag",
                *common,
                "--out",
                str(tmp_path / f"beam.{fmt}"),
                "--runner",
                "beam",
                "--cache",
                str(tmp_path / "cache"),
            ]
        )
        == cli.EXIT_SOME_FAILED
    )
    shards = sorted(glob.glob(str(tmp_path / f"beam-*-of-*.{fmt}")))
    assert shards
    if fmt == "parquet":
        local = pd.read_csv(tmp_path / "local.csv")
        beam = pd.concat([pd.read_parquet(s) for s in shards])
    elif fmt == "csv":
        local = pd.read_csv(tmp_path / "local.csv")
        beam = pd.concat([pd.read_csv(s) for s in shards])
    else:

        def read(path):
            return pd.DataFrame([json.loads(x) for x in Path(path).read_text(encoding="utf-8").split("\n") if x])

        local, beam = read(tmp_path / "local.jsonl"), pd.concat([read(s) for s in shards])
    local, beam = local.set_index("path").sort_index(), beam.set_index("path").sort_index()
    assert list(beam.index) == list(local.index) and len(beam) == 6
    if fmt != "jsonl":
        assert (beam["tag_1"] == local["tag_1"]).all() and (beam["tags"].fillna("") == local["tags"].fillna("")).all()
        np.testing.assert_allclose(beam.filter(like="p_").to_numpy(), local.filter(like="p_").to_numpy(), atol=1e-4)
    else:
        probs = lambda df: np.array([[r[t] for t in LABELS] for r in df["probabilities"]])  # noqa: E731
        np.testing.assert_allclose(probs(beam), probs(local), atol=1e-4)
    meta = json.loads((tmp_path / f"beam.{fmt}.meta.json").read_text())["settings"]
    assert meta == {**json.loads((tmp_path / f"local.{local_fmt}.meta.json").read_text())["settings"], "format": fmt}
    errors = pd.read_csv(tmp_path / f"beam.{fmt}.errors.tsv", sep="\t")
    assert sorted(os.path.basename(p) for p in errors["path"]) == ["corrupt.mp3", "empty.wav"]


def test_dataflow_dry_run_prints_the_graph_and_options(ckpt_path, capsys):
    status = cli.main(
        [
            "embed",
            "gs://my-bucket/audio/**/*.mp3",
            "--out",
            "gs://my-bucket/cache",
            "--weights",
            ckpt_path,
            "--runner",
            "DataflowRunner",
            "--project=my-project",
            "--region=us-central1",
            "--temp_location=gs://my-bucket/tmp",
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0
    for step in ("Match", "Plan", "Decode", "Network", "Assemble", "WriteErrors"):
        assert f"- {step}" in out, step
    options = json.loads(out.split("options: ", 1)[1])
    assert options["runner"] == "DataflowRunner" and options["project"] == "my-project"
    assert options["region"] == "us-central1" and options["temp_location"] == "gs://my-bucket/tmp"


def test_local_inputs_are_refused_for_a_remote_runner(ckpt_path, mtt_clip, capsys):
    status = cli.main(
        [
            "embed",
            str(mtt_clip),
            "--out",
            "gs://b/cache",
            "--weights",
            ckpt_path,
            "--runner",
            "DataflowRunner",
            "--dry-run",
        ]
    )
    assert status == cli.EXIT_ERROR and "give gs:// inputs" in capsys.readouterr().err


@pytest.mark.integration
def test_the_local_path_never_imports_beam():
    code = "import sys, tagger.cli, tagger.distributed, tagger.embedding.embed, tagger.tagging.api; print('apache_beam' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_beam_csv_and_errors_keep_names_with_newlines_quotes_and_tabs(head, ckpt_path, tmp_path):
    folder = tmp_path / "odd"
    names = ["line\nbreak.wav", 'quote"d.wav', "tab\there.wav", "plain.wav"]
    for i, name in enumerate(names):
        write_audio(folder / name, 1.5, freq=300.0 * (i + 1), seed=i)
    (folder / "bad\nempty.wav").write_bytes(b"")
    out = tmp_path / "not" / "yet" / "beam.csv"  # a folder the run makes, as a local `tagger tag` does
    args = ["tag", str(folder), "--model", str(head), "--weights", ckpt_path, "--runner", "beam", "--out", str(out)]
    assert cli.main(args) == cli.EXIT_SOME_FAILED
    shards = sorted(glob.glob(str(out.parent / "beam-*-of-*.csv")))
    rows = pd.concat([pd.read_csv(s) for s in shards])
    assert sorted(os.path.basename(p) for p in rows["path"]) == sorted(names)  # one row per clip
    errors = pd.read_csv(str(out) + ".errors.tsv", sep="\t")
    assert [os.path.basename(p) for p in errors["path"]] == ["bad\nempty.wav"]


def test_a_dataflow_dry_run_without_options_prints_the_plan_offline(ckpt_path, capsys):
    args = ["embed", "gs://b/audio/*.mp3", "--out", "gs://b/cache", "--weights", ckpt_path]
    assert cli.main([*args, "--runner", "DataflowRunner", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "- Network" in out and "a real run needs: --project, --region, --temp_location" in out
