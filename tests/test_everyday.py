"""Everyday use: starter configs, usage errors before TensorFlow, evaluate's default split and cross-validated runs, unreadable files."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import NOT_AUDIO, ROOT, write_feature_dataset

from tagger.exceptions import DataError
from tagger.training import starter


@pytest.mark.parametrize(
    "inputs,n_train,head,window,batch,steps",
    [
        ("embeddings", 6, "dense", 10, 32, 10),
        ("embeddings", 999, "dense", 10, 32, 64),
        ("embeddings", 1000, "attention", 10, 64, 32),
        ("embeddings", 20000, "attention", 10, 64, 100),
        ("features", 300, "mlp", 1, 32, 20),
        ("patches", 300, "cnn4", 3, 32, 20),
    ],
)
def test_starter_config_follows_its_rule(inputs, n_train, head, window, batch, steps):
    cfg = starter.starter_config(
        name="x",
        index="index.csv",
        cache="cache",
        vocabulary="vocab.json",
        task="multilabel",
        n_train=n_train,
        inputs=inputs,
    )
    assert (cfg["head"]["name"], cfg["window"], cfg["batch_size"], cfg["steps_per_epoch"]) == (
        head,
        window,
        batch,
        steps,
    )
    assert cfg["mux"]["n_active"] == min(256, n_train)
    assert cfg["early_stopping"]["patience"] == (8 if n_train < starter.LARGE else 6)


def test_starter_config_refuses_an_empty_training_split():
    with pytest.raises(DataError, match="no clip in the training split"):
        starter.starter_config(name="x", index="i.csv", cache="c", vocabulary="v.json", task="multilabel", n_train=0)


def _prepared(folder, n_train, n_valid=3):
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"track_id": f"t{i}", "path": f"t{i}.wav", "split": "train", "labels": "a"} for i in range(n_train)]
    rows += [{"track_id": f"v{i}", "path": f"v{i}.wav", "split": "valid", "labels": "a"} for i in range(n_valid)]
    rows += [{"track_id": "t0-aug", "path": "t0.wav", "split": "train", "labels": "a", "augmented_from": "t0"}]
    for row in rows:
        row["duration"] = 30.0
    pd.DataFrame(rows).fillna("").to_csv(folder / "index.csv", index=False)
    (folder / "vocab.json").write_text('["a"]')
    (folder / "cache").mkdir(exist_ok=True)
    return folder


@pytest.mark.parametrize("n_train,head", [(12, "dense"), (1200, "attention")])
def test_write_starter_counts_the_training_clips_and_train_reads_it_from_elsewhere(
    tmp_path, monkeypatch, n_train, head
):
    folder = _prepared(tmp_path / "data" / "mine", n_train)
    path = starter.write_starter(
        str(folder), index=str(folder / "index.csv"), vocabulary=str(folder / "vocab.json"), task="singlelabel"
    )
    written = json.loads((folder / "train.json").read_text())
    assert path == str(folder / "train.json") and written["head"]["name"] == head
    assert written["mux"]["n_active"] == min(256, n_train)  # the augmented copy is not a clip
    assert written["data"] == {
        "index": "index.csv",
        "cache": "cache",
        "vocabulary": "vocab.json",
        "task": "singlelabel",
    }
    monkeypatch.chdir(tmp_path)
    assert starter.find_starter("data/mine") == "data/mine/train.json"
    cfg = starter.load_starter("data/mine/train.json")
    assert cfg["data"]["index"] == "data/mine/index.csv" and cfg["data"]["cache"] == "data/mine/cache"
    assert cfg["name"] == "mine" and cfg["data"]["task"] == "singlelabel"


def test_find_starter_names_the_choices(tmp_path):
    with pytest.raises(DataError, match="no starter config"):
        starter.find_starter(str(tmp_path))
    for v in ("music", "527"):
        (tmp_path / f"train_{v}.json").write_text("{}")
    with pytest.raises(DataError, match="several starter configs; name one: .*train_527.json, .*train_music.json"):
        starter.find_starter(str(tmp_path))


PROBE = """
import sys
from tagger.cli import main
code = main(sys.argv[1:])
print("EXIT", code, "TENSORFLOW", "tensorflow" in sys.modules, "KERAS", "keras" in sys.modules)
"""


@pytest.mark.parametrize(
    "args,message",
    [
        (["tag", "{clip}", "--threshold", "-0.1"], "argument --threshold: -0.1 is not a probability (0 to 1)"),
        (["tag", "{clip}", "--threshold", "1.5"], "1.5 is not a probability"),
        (["tag", "{clip}", "--top-n", "0"], "argument --top-n: 0 must be >= 1"),
        (["embed", "{clip}", "--hop", "0.005"], "0.005 is not a patch hop: a positive multiple of 0.01 s"),
        (["embed", "{clip}", "--hop", "0"], "0 is not a patch hop"),
        (["tag", "nothere.wav"], "nothere.wav: no such file or folder"),
        (["embed", "nothere/", "--out", "c"], "nothere/: no such file or folder"),
        (["tag", "{clip}", "--model", "nosuch"], "nosuch: no such model; give a shipped model, a run or bundle folder, or hf://OWNER/REPO. Shipped models: genre10, music"),
        (["tag", "{clip}", "--weights", "missing.ckpt"], "missing.ckpt: no such SavedModel folder or checkpoint"),
        (["tag", "{clip}", "--weights", "w.npz"], "w.npz: no such weights file"),
        (["tag", "{clip}", "--pca", "nopca.npz"], "nopca.npz: no such PCA parameter file"),
        (["evaluate", "norun"], "norun: no such run folder"),
        (["evaluate", "."], ".: not a finished run folder (missing model.keras, config.json, labels.json)"),
        (["evaluate", "--truth", "t.csv", "--model", "music", "{clip}"], "t.csv: no such truth file"),
        (["train", "."], ".: no starter config"),
    ],
)
def test_usage_errors_stop_before_tensorflow_loads(tmp_path, args, message):
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"")
    args = [a.replace("{clip}", str(clip)) for a in args]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert message in done.stderr, done.stderr[-2000:]
    if "EXIT" in done.stdout:  # a check of the command (argparse's own errors exit 2 before the probe prints)
        assert "EXIT 1 TENSORFLOW False KERAS False" in done.stdout, done.stdout
    else:
        assert done.returncode == 2 and "tensorflow" not in done.stderr.lower()


def test_default_split_is_test_else_valid(tmp_path):
    from tagger.training.config import validate
    from tagger.training.evaluate import default_split

    folder = write_feature_dataset(tmp_path / "f")  # train and valid only, as AudioSet's indexes
    cfg = validate(
        {
            "data": {
                "index": str(folder / "index.csv"),
                "cache": str(folder / "cache"),
                "vocabulary": str(folder / "vocab.json"),
                "task": "singlelabel",
            }
        }
    )
    assert default_split(cfg) == "valid"
    index = pd.read_csv(folder / "index.csv")
    index.loc[index.index[:9], "split"] = "test"
    index.to_csv(folder / "index.csv", index=False)
    assert default_split(cfg) == "test"
    index["split"] = "train"
    index.to_csv(folder / "index.csv", index=False)
    with pytest.raises(DataError, match="no 'test' or 'valid' split to evaluate on .*--split"):
        default_split(cfg)


@pytest.mark.slow
def test_evaluate_scores_a_cross_validated_run_on_its_held_out_folds(tmp_path):
    from tagger.training.config import validate
    from tagger.training.dataset import Dataset
    from tagger.training.evaluate import clip_scores, evaluate, load_run
    from tagger.training.train import train

    folder = write_feature_dataset(tmp_path / "f")
    cfg = validate(
        {
            "name": "cv",
            "data": {
                "index": str(folder / "index.csv"),
                "cache": str(folder / "cache"),
                "vocabulary": str(folder / "vocab.json"),
                "task": "singlelabel",
                "cv_folds": 3,
            },
            "head": {"name": "mlp", "hidden": 16, "n_layers": 1},
            "window": 1,
            "batch_size": 16,
            "epochs": 2,
            "steps_per_epoch": 3,
            "mux": {"n_active": 32, "rate": 2.0},
        }
    )
    run = tmp_path / "run"
    train(cfg, str(run), verbose=0)
    with pytest.raises(Exception, match="cross-validated: it is scored on its held-out folds"):
        evaluate(str(run), split="test")
    summary = evaluate(str(run))
    assert summary["split"] == "folds" and summary["folds"] == [0, 1, 2] and summary["n_clips"] == 54
    # the pooled figure is each fold's own head on that fold, nothing else
    dataset = Dataset(cfg)
    y, pred = [], []
    for k in (0, 1, 2):
        model, _, _, _ = load_run(str(run / f"fold{k}"))
        _, emb, yk = dataset.fold(k)
        y.append(np.argmax(yk, 1))
        pred.append(np.argmax(clip_scores(model, emb, window=1, task="singlelabel"), 1))
    assert summary["accuracy"] == pytest.approx(float(np.mean(np.concatenate(y) == np.concatenate(pred))))
    assert (run / "eval" / "folds-head" / "metrics.json").exists()
    cli = subprocess.run(
        [sys.executable, "-m", "tagger", "evaluate", str(run)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert cli.returncode == 0 and "(folds, head)" in cli.stdout, cli.stderr[-2000:]


def test_a_file_no_decoder_reads_is_named_plainly_and_decoder_chatter_stays_out_of_stderr(tmp_path):
    for name in ("x.mp3", "x.wav", "x.txt"):
        (tmp_path / name).write_bytes(NOT_AUDIO)
    probe = """
import sys
from tagger.embedding import audio
for p in sys.argv[1:]:
    try:
        list(audio.iter_blocks(p))
    except Exception as exc:
        print(type(exc).__name__, exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", probe, *(str(tmp_path / n) for n in ("x.mp3", "x.wav", "x.txt"))],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all("AudioError" in line and ": not a readable audio file (" in line for line in lines)
    assert "possibly a pipe" not in done.stdout
    assert "Note:" not in done.stderr and "MPEG" not in done.stderr, done.stderr


def test_real_errors_of_the_decoder_are_still_shown(capfd):
    from tagger.embedding import audio

    with audio._quiet_decoder():
        os.write(2, b"Note: Illegal Audio-MPEG-Header 0x00000000 at offset 2996.\nsomething real\n")
    err = capfd.readouterr().err
    assert "something real" in err and "Illegal" not in err
