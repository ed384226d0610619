"""Your own labelled audio: prepare folder -> train -> evaluate -> tag; an embed cache is reused; one model loader."""

import json
import pickle
import shutil

import pandas as pd
import pytest
from helpers import ENTRY_POINTS, ROOT, load_in_fresh_interpreter, run_in_process, write_audio

from tagger.testing import random_weights, write_checkpoint

LOUD = {"disco", "hiphop", "metal", "pop", "rock"}


def _run(args, cwd):
    # in this process: the flow is the subject, not the process (the shipped bundles load in fresh interpreters below)
    return run_in_process(args, cwd=cwd)


@pytest.mark.slow
def test_prepare_folder_train_evaluate_tag_reusing_an_embed_cache(gtzan_files, ckpt_path, tmp_path):
    audio = tmp_path / "audio"
    rows = []
    for i, f in enumerate(gtzan_files):
        shutil.copy(f, audio / f.name) if audio.exists() else (audio.mkdir(), shutil.copy(f, audio / f.name))
        rows.append({"path": f.name, "labels": "loud" if f.parent.name in LOUD else "soft", "artist": f"artist{i % 5}"})
    (audio / "broken.wav").write_bytes(b"RIFF but not really a wav file")
    rows.append({"path": "broken.wav", "labels": "loud", "artist": "artist9"})
    write_audio(audio / "unlabelled.wav", 2.0)
    pd.DataFrame(rows).to_csv(tmp_path / "labels.csv", index=False)

    first = _run(
        ["embed", "audio", "--out", "data/mine/cache", "--weights", ckpt_path, "--workers", "1", "--no-progress"],
        tmp_path,
    )
    assert first.returncode == 3 and "embedded 11" in first.stdout, first.stderr[
        -2000:
    ]  # ten tracks + the unlabelled clip
    prep = _run(
        [
            "prepare",
            "folder",
            "audio",
            "--labels",
            "labels.csv",
            "--group",
            "artist",
            "--out",
            "data/mine",
            "--weights",
            ckpt_path,
            "--workers",
            "1",
            "--no-progress",
        ],
        tmp_path,
    )
    assert prep.returncode == 3, prep.stderr[-2000:]  # the broken file is reported
    assert "10 clips, singlelabel, 2 labels; embedded 0, reused 10 from the cache" in prep.stdout  # no network call
    assert "unlabelled.wav" in prep.stderr and "broken.wav" in prep.stderr
    index = pd.read_csv(tmp_path / "data/mine/index.csv")
    assert len(index) == 10 and not index["path"].str.contains("broken|unlabelled").any()
    assert index["track_id"].str.startswith("audio/").all()  # the ids tagger embed made
    for _, part in index.groupby("artist"):  # one artist, one side of the split and one fold
        assert part["split"].nunique() == 1 and part["fold"].nunique() == 1
    assert set(index["split"]) == {"train", "valid", "test"}

    # no hand-written config: prepare wrote the starter config beside the index, and `tagger train FOLDER` trains it
    starter = json.loads((tmp_path / "data/mine/train.json").read_text())
    assert starter["head"]["name"] == "dense" and starter["data"]["index"] == "index.csv"  # 6 training clips
    assert "tagger train data/mine" in prep.stdout
    trained_run = _run(["train", "data/mine", "--run-dir", "run", "--quiet"], tmp_path)
    assert trained_run.returncode == 0, trained_run.stderr[-2000:]
    assert "config: data/mine/train.json" in trained_run.stdout
    frozen = json.loads((tmp_path / "run/config.json").read_text())
    assert (
        frozen["data"]["index"] == "data/mine/index.csv" and frozen["name"] == "mine"
    )  # relative to the working folder
    ev = _run(["evaluate", "run"], tmp_path)  # the default split: test, which this index has
    assert ev.returncode == 0 and "accuracy" in ev.stdout and "(test, head)" in ev.stdout, ev.stderr[-2000:]
    tag = _run(
        [
            "tag",
            "audio",
            "--model",
            "run",
            "--weights",
            ckpt_path,
            "--cache",
            "data/mine/cache",
            "--out",
            "t.csv",
            "--workers",
            "1",
            "--no-progress",
        ],
        tmp_path,
    )
    assert tag.returncode == 3 and "tagged 11" in tag.stdout, tag.stderr[-2000:]
    assert set(pd.read_csv(tmp_path / "t.csv")["tag_1"]) <= {"loud", "soft"}

    # the run records what it was trained on; other weights are refused, naming them
    trained = json.loads((tmp_path / "run/bundle.json").read_text())["provenance"]
    entry = pickle.loads(next((tmp_path / "data/mine/cache").rglob("*.pkl")).read_bytes())
    assert trained == {**entry["provenance"], "short_policy": None} and trained["weights"].startswith("vggish-sha1:")
    other = tmp_path / "other" / "vggish_model.ckpt"
    write_checkpoint(random_weights(seed=7), str(other))
    refused = _run(["tag", "audio", "--model", "run", "--weights", str(other), "--out", "u.csv"], tmp_path)
    assert refused.returncode == 1 and f"weights: {trained['weights']} (trained on)" in refused.stderr, refused.stderr
    assert "--allow-other-embedding" in refused.stderr and not (tmp_path / "u.csv").exists()


def test_prepare_folder_genre_layout(gtzan_files, tmp_path):
    from tagger.datasets import folder

    for f in gtzan_files[:4]:
        (tmp_path / "a" / f.parent.name).mkdir(parents=True)
        shutil.copy(f, tmp_path / "a" / f.parent.name / f.name)
    done = folder.prepare(str(tmp_path / "a"), str(tmp_path / "out"), layout="genre", root=str(tmp_path))
    index = pd.read_csv(done["index"])
    assert sorted(index["labels"]) == sorted(f.parent.name for f in gtzan_files[:4]) and done["task"] == "singlelabel"


SHIPPED = sorted(p.name for p in (ROOT / "tagger/models").iterdir() if (p / "model.keras").exists())


@pytest.mark.integration
@pytest.mark.parametrize(
    "entry",
    [e if e in ("load_head", "tagging") else pytest.param(e, marks=pytest.mark.slow) for e in sorted(ENTRY_POINTS)],
)
def test_every_shipped_bundle_loads_in_a_fresh_interpreter(entry):
    """A fresh process that imports only the module of one entry point loads each bundle (custom layers registered)."""
    assert SHIPPED == ["audioset527", "genre10", "music", "musicnn-msd", "musicnn-mtt", "vgg-msd", "vgg-mtt"]
    counts = load_in_fresh_interpreter(entry, {name: ROOT / "tagger" / "models" / name for name in SHIPPED})
    assert all(int(n) > 0 for n in counts.values()), counts
