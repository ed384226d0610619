"""`tagger tag` and the Tagger API with fixture VGGish weights and a fixture head."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from helpers import HEAD_LABELS, NOT_AUDIO, run_in_process, write_head_bundle

from tagger import cli
from tagger.embedding.vggish import frontend
from tagger.exceptions import DataError

HERE = os.path.dirname(__file__)
LABELS = HEAD_LABELS


@pytest.fixture(scope="session")
def head_dir(tmp_path_factory):
    """A bundle in the shipped layout with an (untrained) dense head over raw embeddings."""
    return write_head_bundle(tmp_path_factory.mktemp("head"), seed=0)


def write_long_flac(path, minutes):
    """A 22.05 kHz FLAC of ``minutes`` one-minute sines (220 Hz, then 10 Hz higher each minute), written in blocks."""
    sr = 22050
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, format="FLAC") as f:
        for minute in range(minutes):
            t = np.arange(60 * sr) / sr + minute * 60
            f.write((0.3 * np.sin(2 * np.pi * (220 + minute * 10) * t)).astype(np.float32))
    return path


@pytest.fixture(scope="session")
def long_file(tmp_path_factory):
    """A 20-minute 22.05 kHz FLAC (the memory bound's subject: about 200 MB decoded as float64)."""
    return write_long_flac(tmp_path_factory.mktemp("long") / "twenty_minutes.flac", 20)


@pytest.fixture(scope="session")
def mixed_folder(tmp_path_factory, gtzan_files, mtt_clip):
    """Three GTZAN clips (.au), the MTT clip (.mp3), a 48-kHz stereo WAV, a clip shorter than a patch, a
    three-minute FLAC in a subfolder (many network batches), an empty file and a corrupt one. Three of the ten
    GTZAN clips: each further clip adds a network pass per run and no new case."""
    from helpers import write_audio

    folder = tmp_path_factory.mktemp("mixed")
    for path in gtzan_files[:3] + [mtt_clip]:
        (folder / path.name).symlink_to(path)
    write_audio(folder / "stereo48k.wav", 4.0, sr=48000, channels=2)
    write_audio(folder / "tiny.wav", 0.3)
    (folder / "long").mkdir()
    write_long_flac(folder / "long" / "three_minutes.flac", 3)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "corrupt.mp3").write_bytes(NOT_AUDIO)
    return folder


def test_folder_with_good_and_bad_files(mixed_folder, head_dir, ckpt_path, tmp_path):
    out = tmp_path / "tags.csv"
    status = cli.main(
        [
            "tag",
            str(mixed_folder),
            "--model",
            str(head_dir),
            "--weights",
            ckpt_path,
            "--out",
            str(out),
            "--workers",
            "1",
            "--no-progress",
            "--top-n",
            "3",
            "--taggram",
            str(tmp_path / "taggrams"),
            "--root",
            str(mixed_folder),
        ]
    )
    assert status == cli.EXIT_SOME_FAILED
    df = pd.read_csv(out)
    assert len(df) == 7  # 3 GTZAN + 1 MTT + stereo + tiny + 3-minute
    assert list(df.columns) == ["path", "duration", "tag_1", "p_1", "tag_2", "p_2", "tag_3", "p_3", "tags"]
    assert df["tag_1"].isin(LABELS).all() and (df["p_1"] >= df["p_2"]).all()
    long_row = df[df["path"].str.endswith("three_minutes.flac")].iloc[0]
    assert abs(long_row["duration"] - 180.0) < 0.1
    errors = pd.read_csv(str(out) + ".errors.tsv", sep="\t")
    assert sorted(os.path.basename(p) for p in errors["path"]) == ["corrupt.mp3", "empty.wav"]
    taggram = np.load(tmp_path / "taggrams" / "long" / "three_minutes.flac.npz")
    n = frontend.n_patches(180 * 16000)
    assert n == 187
    assert taggram["taggram"].shape == (n, len(LABELS)) and taggram["timestamps"][-1] == pytest.approx((n - 1) * 0.96)
    assert str(taggram["path"]).endswith("three_minutes.flac") and str(taggram["model"]).startswith(str(head_dir))

    # `tagger plot taggram`: the clip's top tags over time, its path and the model in the title
    from tagger.tagging import plots

    clip = next((tmp_path / "taggrams").rglob("blues*.npz"))
    data = np.load(clip)
    assert cli.main(["plot", "taggram", str(clip), "--top", "3"]) == cli.EXIT_OK
    assert clip.with_suffix(".png").stat().st_size > 5000
    fig = plots.plot_taggram(str(clip), str(tmp_path / "t.png"), top=3)
    ax = fig.axes[0]
    order = np.argsort(-data["taggram"].mean(axis=0), kind="stable")[:3]
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(data["labels"][i]) for i in order]
    np.testing.assert_array_equal(ax.images[0].get_array(), data["taggram"][:, order].T)
    assert ax.get_title() == f"{data['path']}\n{data['model']}" and "blues" in ax.get_title()
    assert ax.get_xlabel() == "time (s)" and ax.images[0].get_extent()[1] == pytest.approx(
        len(data["timestamps"]) * 0.96
    )


@pytest.mark.integration
def test_long_file_memory_is_bounded(long_file):
    """Decoding streams in blocks: peak memory stays far below the file's decoded size (about 200 MB as float64)."""
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "memory_probe.py"), str(long_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    peak = json.loads(out.stdout.strip().splitlines()[-1])
    assert peak["patches"] == frontend.n_patches(1200 * 16000)
    assert peak["worker_mb"] < 200, peak
    assert peak["main_mb"] < 200, peak


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from tagger import cli
    from tagger.tagging import writer
    real = writer.csv_row
    count = {"n": 0}
    def rows(*a, **k):
        count["n"] += 1
        if count["n"] == int(os.environ["KILL_AT_ROW"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)
    writer.csv_row = rows
    sys.exit(cli.main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_kill_and_resume_equals_uninterrupted(mixed_folder, head_dir, ckpt_path, tmp_path):
    args = [
        "tag",
        str(mixed_folder),
        "--model",
        str(head_dir),
        "--weights",
        ckpt_path,
        "--workers",
        "1",
        "--no-progress",
        "--exclude",
        "three_minutes.flac",
    ]

    def run(out, kill_at):
        env = {**os.environ, "KILL_AT_ROW": str(kill_at)}
        return subprocess.run(
            [sys.executable, "-c", KILLER, *args, "--out", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    # the uninterrupted run needs no process of its own (the kill and the resume do)
    whole = run_in_process([*args, "--out", tmp_path / "whole.csv"], cwd=tmp_path)
    assert whole.returncode == cli.EXIT_SOME_FAILED, whole.stderr[-2000:]
    killed = run(tmp_path / "resumed.csv", 4)
    assert killed.returncode == -signal.SIGKILL
    assert len(pd.read_csv(tmp_path / "resumed.csv")) == 3
    resumed = run(tmp_path / "resumed.csv", 999)
    assert resumed.returncode == cli.EXIT_SOME_FAILED, resumed.stderr[-2000:]
    assert "skipped" in resumed.stdout
    a, b = pd.read_csv(tmp_path / "whole.csv"), pd.read_csv(tmp_path / "resumed.csv")
    assert list(a["path"]) == list(b["path"]) and len(a) == 6
    text_cols = [c for c in a.columns if not c.startswith("p_") and c != "duration"]
    pd.testing.assert_frame_equal(a[text_cols], b[text_cols])
    np.testing.assert_allclose(a.filter(like="p_").to_numpy(), b.filter(like="p_").to_numpy(), atol=1e-4)
    assert (tmp_path / "whole.csv.errors.tsv").read_text() == (tmp_path / "resumed.csv.errors.tsv").read_text()


@pytest.mark.integration
@pytest.mark.backends
def test_tagger_api_arrays_jsonl_and_cache_reuse(head_dir, ckpt_path, embedder, make_audio, tmp_path):
    from tagger.tagging.api import Tagger
    from tagger.tagging.writer import tag_to_file

    tagger = Tagger(str(head_dir), extractor=embedder, cache_dir=str(tmp_path / "cache"))
    y = np.sin(np.arange(32000) * 0.05).astype(np.float32)
    df = tagger.tag_arrays([(y, 16000)], names=["sine"])
    assert df.loc[0, "path"] == "sine" and df.loc[0, "tag_1"] in LABELS
    # one bad array among good ones is listed, never fails the call
    mixed = tagger.tag_arrays([(y, 16000), (np.zeros(0, np.float32), 16000), (y, 0)], names=["a", "empty", "bad"])
    assert list(mixed["path"]) == ["a"] and mixed.loc[0].equals(df.loc[0].replace("sine", "a"))
    assert [n for n, _ in mixed.attrs["errors"]] == ["empty", "bad"]
    assert "sr=0 must be a positive integer" in mixed.attrs["errors"][1][1]
    paths = [make_audio(f"c{i}.wav", 2.0 + i, seed=i) for i in range(3)]
    first = tagger.tag(paths, top_n=2)
    assert len(first) == 3
    calls = {"n": 0}
    real_run = embedder.run

    def counting(patches):
        calls["n"] += 1
        return real_run(patches)

    embedder.run = counting
    try:
        again = Tagger(str(head_dir), extractor=embedder, cache_dir=str(tmp_path / "cache")).tag(paths, top_n=2)
    finally:
        embedder.run = real_run
    assert calls["n"] == 0  # every embedding came from the cache
    pd.testing.assert_frame_equal(first, again)
    summary = tag_to_file(tagger, paths, tmp_path / "t.jsonl", fmt="jsonl", progress=False, workers=0)
    records = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert summary["tagged"] == 3 and set(records[0]["probabilities"]) == set(LABELS)


def test_unknown_model(ckpt_path, tmp_path):
    from tagger.tagging.api import Tagger

    with pytest.raises(DataError, match="no such model"):
        Tagger(str(tmp_path / "nope"), weights=ckpt_path)


@pytest.mark.backends
@pytest.mark.parametrize("name,n_labels", [("music", 150), ("genre10", 10), ("audioset527", 527)])
def test_shipped_heads_load_and_tag(name, n_labels, ckpt_path, pca_params, mtt_clip):
    from tagger.tagging.api import Tagger
    from tagger.training import bundle

    assert name in bundle.shipped()
    tagger = Tagger(name, weights=ckpt_path, pca_params=pca_params)
    assert len(tagger.labels) == n_labels and tagger.extractor.postprocessor is not None
    with open(os.path.join(tagger.folder, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["experiment"]["score"] > metrics["baseline"]["mean"]
    if name == "music":  # per-tag thresholds from held-out (out-of-fold) predictions, and it says so
        assert "out-of-fold" in metrics["thresholds"]["chosen_on"]
        assert metrics["thresholds"]["heldout_macro_f1"] > metrics["thresholds"]["heldout_macro_f1_previous_thresholds"]
    df = tagger.tag([mtt_clip], top_n=3, workers=0)
    assert len(df) == 1 and df.loc[0, "tag_1"] in tagger.labels
    if name == "genre10":
        assert df.loc[0, "tags"] in tagger.labels  # single-label: exactly one genre


def test_head_folder_without_bundle_json_is_refused(head_dir, embedder, tmp_path):
    """No guessing which embeddings a head expects: a folder without bundle.json is an error."""
    from tagger.tagging.api import Tagger

    bare = tmp_path / "bare"
    shutil.copytree(head_dir, bare)
    (bare / "bundle.json").unlink()
    with pytest.raises(DataError, match="no bundle.json"):
        Tagger(str(bare), extractor=embedder)
