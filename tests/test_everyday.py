"""Everyday use: starter configs, usage errors before TensorFlow, evaluate's default split and cross-validated runs, unreadable files."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from helpers import NOT_AUDIO, ROOT, SEQUENCE, run_in_process, write_audio, write_feature_dataset

from tagger.exceptions import DataError, ParameterError
from tagger.training import starter
from tagger.training.config import load_config


def _python(*args, cwd=None, env=None, timeout=120):
    """``python ARGS`` in a fresh interpreter that imports this checkout's tagger: what it printed and its status."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


@pytest.mark.parametrize(
    "kind,n_train,head,window,batch,steps",
    [
        ("raw", 6, "dense", 10, 32, 10),
        ("postprocessed", 999, "dense", 10, 32, 64),
        ("raw", 1000, "attention", 10, 64, 32),
        ("postprocessed", 20000, "attention", 10, 64, 100),
        ("features", 300, "mlp", 1, 32, 20),
        ("melspec", 300, "cnn4", 3, 32, 20),
    ],
)
def test_starter_config_follows_its_rule(kind, n_train, head, window, batch, steps):
    cfg = starter.starter_config(
        name="x",
        index="index.csv",
        cache="cache",
        vocabulary="vocab.json",
        task="multilabel",
        n_train=n_train,
        kind=kind,
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
    settings = dict(index=str(folder / "index.csv"), vocabulary=str(folder / "vocab.json"), task="singlelabel")
    path, new = starter.write_starter(str(folder), **settings)
    written = json.loads((folder / "train.json").read_text())
    assert path == str(folder / "train.json") and new and written["head"]["name"] == head
    (folder / "train.json").write_text(json.dumps({**written, "epochs": 3}))  # your edit survives a second prepare
    assert starter.write_starter(str(folder), **settings) == (path, False)
    assert json.loads((folder / "train.json").read_text())["epochs"] == 3
    (folder / "train.json").write_text(json.dumps(written))
    assert written["mux"]["n_active"] == min(256, n_train)  # the augmented copy is not a clip
    assert written["data"] == {
        "index": "index.csv",
        "cache": "cache",
        "vocabulary": "vocab.json",
        "task": "singlelabel",
        "relative_to": "config",
    }
    monkeypatch.chdir(tmp_path)
    assert starter.find_starter("data/mine") == "data/mine/train.json"
    cfg = starter.load_starter("data/mine/train.json")
    assert cfg["data"]["index"] == "data/mine/index.csv" and cfg["data"]["cache"] == "data/mine/cache"
    assert cfg["name"] == "mine" and cfg["data"]["task"] == "singlelabel"
    # the file itself, as `prepare` prints it (`tagger train data/mine/train.json`), from here and from elsewhere
    assert load_config("data/mine/train.json")["data"] == {**cfg["data"], "relative_to": "working_folder"}
    monkeypatch.chdir(folder)
    assert load_config("train.json")["data"]["index"] == "index.csv"
    # a starter config written before starters said so: relative to its folder all the same, by `tagger train FOLDER`
    old = {**written, "data": {k: v for k, v in written["data"].items() if k != "relative_to"}}
    (folder / "train.json").write_text(json.dumps(old))
    monkeypatch.chdir(tmp_path)
    assert starter.load_starter("data/mine/train.json")["data"]["index"] == "data/mine/index.csv"
    with pytest.raises(DataError, match=r"config key data.index: .*/index.csv does not exist"):
        load_config("data/mine/train.json")  # a hand-written config: paths from the working folder, as documented


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


@pytest.mark.integration
@pytest.mark.parametrize(
    "args,message",
    [
        (["tag", "{clip}", "--threshold", "-0.1"], "argument --threshold: -0.1 is not a probability (0 to 1)"),
        (["tag", "{clip}", "--threshold", "1.5"], "1.5 is not a probability"),
        (["tag", "{clip}", "--top-n", "0"], "argument --top-n: 0 must be >= 1"),
        (
            ["embed", "{clip}", "--hop", "0.005"],
            "0.005 is not a patch hop (hop_seconds=0.005 must be a positive multiple of 0.01 s)",
        ),
        (["embed", "{clip}", "--hop", "0"], "0 is not a patch hop"),
        (["tag", "nothere.wav"], "nothere.wav: no such file or folder"),
        (["embed", "nothere/", "--out", "c"], "nothere/: no such file or folder"),
        (
            ["tag", "{clip}", "--model", "nosuch"],
            "nosuch: no such model; give a shipped model, a run or bundle folder, or hf://OWNER/REPO. Shipped models: audioset527, genre10, music",
        ),
        (["tag", "{clip}", "--weights", "missing.ckpt"], "missing.ckpt: no such SavedModel folder or checkpoint"),
        (["tag", "{clip}", "--weights", "w.npz"], "w.npz: no such weights file"),
        (["tag", "{clip}", "--pca", "nopca.npz"], "nopca.npz: no such PCA parameter file"),
        (["evaluate", "norun"], "norun: no such run folder"),
        (["evaluate", "."], ".: not a finished run folder (missing model.keras, config.json, labels.json)"),
        (["evaluate", "--truth", "t.csv", "--model", "music", "{clip}"], "t.csv: no such truth file"),
        (["train", "."], ".: no starter config"),
        (["tag", "{clip}", "--batch-size", "0"], "argument --batch-size: 0 must be >= 1"),
        (["embed", "{clip}", "--out", "c", "--workers", "-1"], "argument --workers: -1 must be >= 0"),
        (["weights", "export", "v.ckpt", "w.bin"], "w.bin: a plain weights file ends in .npz or .safetensors"),
    ],
)
def test_usage_errors_stop_before_tensorflow_loads(tmp_path, args, message):
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"")
    args = [a.replace("{clip}", str(clip)) for a in args]
    done = _python("-c", PROBE, *args, cwd=tmp_path)
    assert message in done.stderr, done.stderr[-2000:]
    if "EXIT" in done.stdout:  # a check of the command (argparse's own errors exit 2 before the probe prints)
        assert "EXIT 1 TENSORFLOW False KERAS False" in done.stdout, done.stdout
    else:
        assert done.returncode == 2 and "tensorflow" not in done.stderr.lower()


@pytest.mark.integration
def test_reruns_with_nothing_to_do_load_no_tensorflow(tmp_path, plain_weights, pca_params):
    """`tag` and `embed` again over what is done: the answer from the output and the cache, before Keras loads."""
    write_audio(tmp_path / "clips" / "a.wav", 2.0)
    weights = tmp_path / "vggish.npz"
    weights.write_bytes(plain_weights.read_bytes())  # a file the memo has not seen: the first run reads it
    env = {"TAGGER_VGGISH_WEIGHTS": str(weights), "TAGGER_VGGISH_PCA": str(pca_params)}
    tag = ["tag", "clips", "--model", "genre10", "--out", "tags.csv", "--cache", "cache", "--workers", "0"]
    first = _python("-c", PROBE, *tag, cwd=tmp_path, env=env)
    assert "EXIT 0 TENSORFLOW True" in first.stdout, first.stdout + first.stderr[-2000:]
    rows = (tmp_path / "tags.csv").read_bytes()
    for argv, line in [
        (tag, "tagged 0, skipped 1 (done before), failed 0 of 1 files -> tags.csv"),
        (["embed", "clips", "--out", "cache", "--workers", "0"], "embedded 0, skipped 1 (already cached)"),
    ]:
        done = _python("-c", PROBE, *argv, cwd=tmp_path, env=env)
        assert line in done.stdout and "EXIT 0 TENSORFLOW False KERAS False" in done.stdout, done.stdout + done.stderr
    assert (tmp_path / "tags.csv").read_bytes() == rows


@pytest.mark.integration
def test_an_output_in_use_other_options_and_a_bad_precision_are_refused_before_tensorflow_loads(tmp_path):
    from tagger import locks
    from tagger.tagging import writer
    from tagger.tagging.api import describe

    clip = tmp_path / "a.wav"
    clip.write_bytes(b"")
    settings = writer.option_settings(describe("music"), fmt="csv", top_n=5, threshold=None, taggram=None)
    (tmp_path / "out.csv").write_text("path,duration\r\n")
    (tmp_path / "out.csv.meta.json").write_text(json.dumps({"settings": settings}))

    def refused(*args, env=None):
        done = _python("-c", PROBE, "tag", str(clip), *args, cwd=tmp_path, env=env)
        assert "EXIT 1 TENSORFLOW False KERAS False" in done.stdout, done.stdout + done.stderr[-2000:]
        return done.stderr

    assert "out.csv was made with other settings (top_n: 5 then, 3 now)" in refused("--out", "out.csv", "--top-n", "3")
    with locks.exclusive(locks.output_lock_path(str(tmp_path / "busy.csv")), what="this test"):
        assert "output busy.csv is in use by pid" in refused("--out", "busy.csv")
    bogus = refused("--out", "x.csv", env={"TAGGER_PRECISION": "bogus"})
    assert "TAGGER_PRECISION='bogus' must be one of float32, bfloat16, float16, auto" in bogus


def test_default_split_is_test_else_valid(tmp_path):
    from tagger.training.config import validate
    from tagger.training.dataset import Dataset
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
    assert default_split(Dataset(cfg)) == "valid"
    index = pd.read_csv(folder / "index.csv")
    index.loc[index.index[:9], "split"] = "test"
    index.to_csv(folder / "index.csv", index=False)
    assert default_split(Dataset(cfg)) == "test"
    index["split"] = "train"
    index.to_csv(folder / "index.csv", index=False)
    with pytest.raises(DataError, match="no 'test' or 'valid' split to evaluate on .*--split"):
        default_split(Dataset(cfg))


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
    # one fold's folder: scored on the clips it held out (never the test split it mostly trained on)
    one = evaluate(str(run / "fold1"))
    assert one["split"] == "fold1" and one["fold"] == 1 and one["n_clips"] == len(y[1])
    assert one["accuracy"] == pytest.approx(float(np.mean(y[1] == pred[1])))
    with pytest.raises(ParameterError, match=r"fold 1 of the cross-validated run .*: it trained on the other folds"):
        evaluate(str(run / "fold1"), split="test")
    from tagger.training import bundle

    with pytest.raises(DataError, match=r"run: a cross-validated run, a head per fold .*\(--model .*fold0\)"):
        bundle.resolve(str(run))  # `tag --model RUN`: which head to use is said, not "no such model"
    cli = _python("-m", "tagger", "evaluate", str(run), timeout=600)
    assert cli.returncode == 0 and "(folds, head)" in cli.stdout, cli.stderr[-2000:]


@pytest.mark.integration
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
    done = _python("-c", probe, *(str(tmp_path / n) for n in ("x.mp3", "x.wav", "x.txt")), timeout=60)
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all("AudioError" in line and ": not a readable audio file (" in line for line in lines)
    assert "possibly a pipe" not in done.stdout
    assert "Note:" not in done.stderr and "MPEG" not in done.stderr, done.stderr


def test_real_errors_of_the_decoder_are_still_shown(capfd):
    from tagger.embedding import audio

    with audio.filtered_stderr(audio._DECODER_CHATTER):
        os.write(2, b"Note: Illegal Audio-MPEG-Header 0x00000000 at offset 2996.\nsomething real\n")
    err = capfd.readouterr().err
    assert "something real" in err and "Illegal" not in err


@pytest.mark.parametrize("name", ["music", "genre10", "audioset527"])
def test_every_shipped_head_has_a_card_whose_figures_are_its_metrics(name, capsys):
    from tagger.cli import main
    from tagger.training import bundle, card

    folder = os.path.join(bundle.SHIPPED_DIR, name)
    meta = json.loads(pathlib.Path(os.path.join(folder, "bundle.json")).read_text())
    metrics = json.loads(pathlib.Path(os.path.join(folder, "metrics.json")).read_text())
    labels = json.loads(pathlib.Path(os.path.join(folder, "labels.json")).read_text())
    stored = meta["card"]
    assert stored == card.shipped_card(folder, name=name, seed=0)  # derived from the files, not typed
    assert stored["quality"]["value"] == metrics["experiment"]["score"] and stored["classes"] == len(labels)
    assert stored["quality"]["std"] == metrics["experiment"]["std"] and stored["epochs"] == metrics["epochs"]
    assert stored["license"] == "CC-BY-4.0" and stored["embedding"]["provenance"] == meta["provenance"]
    if "thresholds" in metrics:
        assert stored["thresholds"]["chosen_on"] == metrics["thresholds"]["chosen_on"]
    text = pathlib.Path(os.path.join(folder, "MODEL.md")).read_text()
    assert text.startswith("---\nlicense: cc-by-4.0\n") and f"{metrics['experiment']['score']:.4f}" in text
    assert stored["summary"] in text and all(f in stored for f in card.FIELDS)
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    width = max(len(n) for n in bundle.shipped())  # names in one column, then the summary
    assert f"{name:{width}s}  {stored['summary']}" in lines


def test_a_card_of_an_unknown_embedding_kind_is_a_clear_error(tmp_path):
    import shutil

    from tagger.exceptions import DataError
    from tagger.training import bundle, card

    folder = tmp_path / "b"
    shutil.copytree(os.path.join(bundle.SHIPPED_DIR, "genre10"), folder)
    meta = json.loads((folder / "bundle.json").read_text())
    (folder / "bundle.json").write_text(json.dumps({**meta, "embedding": "patches"}))
    with pytest.raises(DataError, match=r"b/bundle.json: embedding 'patches' is not one of \['features', 'melspec'"):
        card.shipped_card(str(folder), name="genre10")


def test_an_export_is_whole_or_absent_and_replaces_a_bundle_only_when_asked(tmp_path, monkeypatch, capsys):
    import shutil

    from tagger import cli
    from tagger.training import bundle, card

    run = tmp_path / "run"  # a run folder: a shipped head with the metrics and frozen config a run has
    shutil.copytree(os.path.join(bundle.SHIPPED_DIR, "genre10"), run)
    (run / "metrics.json").write_text(json.dumps({"monitor": "val_accuracy", "valid_score": 0.5, "best_epoch": 3}))
    data = {"index": "i.csv", "vocabulary": "v.json", "train_split": "train", "valid_split": "valid"}
    (run / "config.json").write_text(json.dumps({"name": "g", "data": data, "head": {"name": "attention"}, "seed": 0}))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    out = tmp_path / "exports" / "b"

    def export(*extra):
        return cli.main(["export", str(run), "--out", str(out), *extra])

    def hidden():  # temporary or set-aside siblings left behind
        return [p.name for p in out.parent.iterdir() if p.name.startswith(".")]

    def planted(*args):
        raise DataError("planted failure as the card is written")

    def interrupted(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:  # the card is the last file: everything else was written by then
        patched.setattr(card, "write_card", planted)
        assert export() == cli.EXIT_ERROR
        assert not out.exists() and hidden() == []
        patched.setattr(card, "write_card", interrupted)
        with pytest.raises(KeyboardInterrupt):
            bundle.export_run(str(run), str(out))
        assert not out.exists() and hidden() == []
    assert export("--license", "MIT", "--name", "two\nlines") == cli.EXIT_OK
    whole, files = bundle.content_hash(out), sorted(os.listdir(out))
    text = (out / "MODEL.md").read_text()  # the card as given: its licence id, its name on one line, epochs 1-based
    assert "\nlicense: mit\n" in text and "\n# two lines\n" in text and "; seed 0; 4 epochs" in text
    assert {"model.keras", "bundle.json", "MODEL.md", "README.md"} <= set(files) and hidden() == []
    (out / "stale.txt").write_text("left by an older export")
    capsys.readouterr()
    assert export() == cli.EXIT_ERROR
    assert f"{out} exists: pass --overwrite to replace it" in capsys.readouterr().err
    with monkeypatch.context() as patched:  # a failed replacement leaves the old bundle as it was
        patched.setattr(card, "write_card", planted)
        assert export("--overwrite") == cli.EXIT_ERROR
    assert (out / "stale.txt").exists() and bundle.content_hash(out) == whole and hidden() == []
    assert export("--overwrite") == cli.EXIT_OK
    assert sorted(os.listdir(out)) == files and hidden() == []  # the new bundle whole (model.keras records its date)
    assert json.loads((out / "bundle.json").read_text())["card"]["name"] == "g"  # this export named none
    for target in (run, run / "bundle"):  # never the run folder, nor inside it
        assert cli.main(["export", str(run), "--out", str(target), "--overwrite"]) == cli.EXIT_ERROR
        assert "is the run folder" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_card_never_changes_the_content_hash(tmp_path):
    import shutil

    from tagger.training import bundle

    folder = tmp_path / "b"
    shutil.copytree(os.path.join(bundle.SHIPPED_DIR, "genre10"), folder)
    with_card = bundle.content_hash(folder)
    meta = json.loads((folder / "bundle.json").read_text())
    card = meta.pop("card")
    (folder / "bundle.json").write_text(json.dumps(meta, indent=1))
    assert bundle.content_hash(folder) == with_card
    meta["card"] = {**card, "summary": "another text"}
    (folder / "bundle.json").write_text(json.dumps(meta, indent=1))
    assert bundle.content_hash(folder) == with_card
    meta["window"] = 5  # what decides an output does change it
    (folder / "bundle.json").write_text(json.dumps(meta, indent=1))
    assert bundle.content_hash(folder) != with_card


@pytest.mark.slow
def test_export_a_run_then_tag_with_it_from_a_prepopulated_hub_cache_offline(tmp_path):
    from helpers import write_audio

    from tagger.testing import populate_hub_cache
    from tagger.training import bundle, hub
    from tagger.training.config import validate
    from tagger.training.train import train

    folder = write_feature_dataset(tmp_path / "f")
    cfg = {
        "name": "feat",
        "data": {
            "index": str(folder / "index.csv"),
            "cache": str(folder / "cache"),
            "vocabulary": str(folder / "vocab.json"),
            "task": "singlelabel",
        },
        "head": {"name": "mlp", "hidden": 16, "n_layers": 1},
        "window": 1,
        "batch_size": 16,
        "epochs": 2,
        "steps_per_epoch": 3,
        "mux": {"n_active": 32, "rate": 2.0},
    }
    train(validate(cfg), str(tmp_path / "run"), verbose=0)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}

    def cli(*args):
        return _python("-m", "tagger", *args, cwd=tmp_path, env=env, timeout=600)

    # export in this process; the tagging in processes of their own, which read HF_HUB_OFFLINE as they import
    done = run_in_process(["export", "run", "--out", "exported", "--license", "MIT"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "exported"
    meta = json.loads((out / "bundle.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert meta["card"]["quality"]["value"] == metrics["valid_score"] and meta["card"]["license"] == "MIT"
    assert meta["card"]["head"] == "mlp" and meta["card"]["seed"] == 0
    assert meta["card"]["classes"] == len(json.loads((out / "labels.json").read_text()))
    assert (out / "README.md").read_text() == (out / "MODEL.md").read_text()
    assert set(os.listdir(out)) <= set(hub.BUNDLE_FILES)

    write_audio(tmp_path / "clips" / "a.wav", 3.0)
    missing = cli("tag", "clips", "--model", "hf://someone/feat-head", "--out", "t.csv")
    assert missing.returncode == 1 and "not in the local Hugging Face cache" in missing.stderr
    assert "HF_HUB_OFFLINE is set" in missing.stderr, missing.stderr
    snapshot = populate_hub_cache(tmp_path / "hub", "someone/feat-head", out)
    specs = ("hf://someone/feat-head", "hf://someone/feat-head@main")
    both = [["tag", "clips", "--model", s, "--out", f"t{len(s)}.csv", "--workers", "0", "--no-progress"] for s in specs]
    tagged = _python("-c", SEQUENCE, json.dumps(both), cwd=tmp_path, env=env, timeout=600)  # one process, two runs
    assert tagged.returncode == 0, tagged.stderr[-2000:]
    for spec in specs:
        row = pd.read_csv(tmp_path / f"t{len(spec)}.csv").iloc[0]
        assert row["tag_1"] in json.loads((out / "labels.json").read_text())
    assert bundle.content_hash(snapshot) == bundle.content_hash(out)
    unknown = cli("tag", "clips", "--model", "hf://someone/feat-head@v2", "--out", "u.csv")
    assert unknown.returncode == 1 and "not in the local Hugging Face cache" in unknown.stderr


def test_plot_run_draws_the_history_it_reads(tmp_path):
    import csv

    from tagger.cli import main
    from tagger.tagging import plots

    run = tmp_path / "myrun"
    run.mkdir()
    rows = [
        {"epoch": e, "loss": 1.0 / (e + 1), "val_score": s, "lr": lr}
        for e, s, lr in zip(range(6), (0.2, 0.35, 0.5, 0.45, 0.48, 0.44), (1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4))
    ]
    with open(run / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (run / "metrics.json").write_text(json.dumps({"monitor": "macro_pr_auc", "best_epoch": 2, "valid_score": 0.5}))
    assert main(["plot", "run", str(run)]) == 0 and (run / "history.png").stat().st_size > 5000
    fig = plots.plot_run(str(run), str(tmp_path / "not" / "yet" / "h.png"))  # a missing folder is made
    assert (tmp_path / "not" / "yet" / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in (tmp_path / "not" / "yet").iterdir()] == ["h.png"]  # written atomically, no .tmp left
    top, bottom, right = fig.axes[0], fig.axes[1], fig.axes[2]
    loss, score = top.get_lines()[0], right.get_lines()[0]
    assert list(loss.get_xdata()) == list(range(6)) and list(loss.get_ydata()) == [r["loss"] for r in rows]
    assert (
        list(score.get_ydata()) == [r["val_score"] for r in rows] and score.get_label() == "macro_pr_auc (validation)"
    )
    (lr,) = [line for line in bottom.get_lines() if line.get_label() == "learning rate"]
    assert list(lr.get_ydata()) == [r["lr"] for r in rows] and bottom.get_yscale() == "log"
    marks = [line for ax in (top, right, bottom) for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(marks) == 3 and all(list(m.get_xdata()) == [2, 2] for m in marks)
    assert top.get_title() == "myrun: best epoch 2, macro_pr_auc 0.5000"
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert labels == ["training loss", "macro_pr_auc (validation)", "best epoch 2"]
    assert bottom.get_xlabel() == "epoch" and bottom.get_ylabel() == "learning rate"


def test_plot_refuses_what_is_not_a_taggram_or_a_run(tmp_path):
    from tagger.tagging import plots

    (tmp_path / "x.npz").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="x.npz: not a taggram file"):
        plots.plot_taggram(str(tmp_path / "x.npz"))
    np.savez(tmp_path / "y.npz", a=np.zeros(2))
    with pytest.raises(DataError, match="missing taggram, labels, timestamps"):
        plots.plot_taggram(str(tmp_path / "y.npz"))
    with pytest.raises(DataError, match="no history.csv"):
        plots.plot_run(str(tmp_path))
    # a tag output given for a taggram; a truncated .npz; a taggram narrower than its labels
    (tmp_path / "tags.csv").write_text("path,tag_1\na.wav,Music\n")
    with pytest.raises(DataError, match=r"tags.csv: not a taggram file \(tagger tag --taggram DIR writes one .npz"):
        plots.plot_taggram(str(tmp_path / "tags.csv"))
    good = dict(taggram=np.full((31, 10), 0.5, np.float32), labels=np.array([f"t{i}" for i in range(10)]))
    np.savez(tmp_path / "t.npz", timestamps=np.arange(31) * 0.96, **good)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "t.npz").read_bytes()[:-200])
    with pytest.raises(DataError, match="cut.npz: a damaged or truncated taggram file .*tag the clip again"):
        plots.plot_taggram(str(tmp_path / "cut.npz"))
    np.savez(tmp_path / "wide.npz", timestamps=np.arange(31) * 0.96, taggram=good["taggram"], labels=np.arange(150))
    with pytest.raises(DataError, match=r"wide.npz: its taggram \(31, 10\) does not match its 150 labels"):
        plots.plot_taggram(str(tmp_path / "wide.npz"))
    # a damaged history: a row cut short, a word where a number belongs
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "history.csv").write_text("epoch,loss,val_score,lr\n0,0.5,0.2,0.001\n1,abc,0.3,0.001\n")
    with pytest.raises(DataError, match=r"history.csv: a damaged history: line 3 has no number for loss"):
        plots.plot_run(str(tmp_path / "run"))


@pytest.mark.integration
def test_prepare_help_says_which_options_each_adapter_takes():
    done = _python("-m", "tagger", "prepare", "--help", timeout=60)
    assert done.returncode == 0
    lines = {
        line.split()[0]: line
        for line in done.stdout.split("options by dataset", 1)[1].splitlines()[1:]
        if line[:2] == "  "
    }
    assert {"audioset", "gtzan", "mtt", "folder"} <= set(lines), done.stdout
    assert (
        "--annotations (required)" in lines["mtt"]
        and "--labels" in lines["folder"]
        and "--vocabulary" in lines["audioset"]
    )
    assert "train.json" in done.stdout and "tagger train OUT" in done.stdout


def test_a_damaged_mp3_fails_with_its_name_and_without_decoder_chatter(tmp_path, mtt_clip):
    data = mtt_clip.read_bytes()
    damaged = tmp_path / "damaged.mp3"
    damaged.write_bytes(data[: len(data) // 2] + bytes(range(1, 255)) * 40 + data[len(data) // 2 :])
    probe = """
import sys
from tagger.embedding import audio
try:
    sum(len(b) for b in audio.iter_blocks(sys.argv[1]))
    print("DECODED")
except Exception as exc:
    print(type(exc).__name__, exc)
"""
    done = _python("-c", probe, str(damaged), timeout=60)
    assert done.stdout.startswith(("AudioError " + str(damaged), "DECODED")), done.stdout + done.stderr
    assert "Note:" not in done.stderr and "libmpg123" not in done.stderr and "resync" not in done.stderr, done.stderr


def test_an_unfinished_run_is_refused_by_tag_evaluate_and_export(tmp_path, capsys):
    """A head but no metrics.json (killed, or still training): never passed off as the run's head."""
    import shutil

    from tagger import cli
    from tagger.training import bundle

    run = tmp_path / "run"
    shutil.copytree(os.path.join(bundle.SHIPPED_DIR, "genre10"), run)
    (run / "config.json").write_text("{}")
    (run / "metrics.json").unlink()
    (tmp_path / "a.wav").write_bytes(b"")
    commands = (
        ["tag", str(tmp_path / "a.wav"), "--model", str(run), "--out", str(tmp_path / "t.csv")],
        ["evaluate", str(run)],
        ["export", str(run), "--out", str(tmp_path / "b")],
    )
    for command in commands:
        assert cli.main(command) == cli.EXIT_ERROR, command
        err = capsys.readouterr().err
        assert f"{run}: an unfinished training run" in err and f"--run-dir {run} (it resumes)" in err, err
    assert not (tmp_path / "b").exists() and not (tmp_path / "t.csv").exists()


def test_a_csv_given_as_predictions_and_truth_paths_that_match_nothing_say_what_to_do(tmp_path, monkeypatch):
    from tagger.training.evaluate import evaluate_truth, predictions_from_jsonl

    (tmp_path / "tags.csv").write_text("path,duration,tag_1,p_1\na.wav,3.0,Music,0.9\n")
    with pytest.raises(DataError, match=r"tags.csv: not a JSONL output of tagger tag .* --out NAME.jsonl"):
        predictions_from_jsonl(str(tmp_path / "tags.csv"))
    (tmp_path / "t.csv").write_text("path,labels\nclips/a.wav,Music\nclips/b.wav,Music\n")
    monkeypatch.chdir(tmp_path)
    scores = np.array([[0.9, 0.1], [0.2, 0.7]], np.float32)
    with pytest.raises(DataError, match=r"no path matches: the truth file names .*clips/a.wav.*, the predictions"):
        evaluate_truth(["/elsewhere/a.wav", "/elsewhere/b.wav"], scores, ["Music", "Speech"], "t.csv", plots=False)


def test_a_split_name_the_index_lacks_is_named_with_the_splits_it_has(tmp_path):
    from tagger.training.config import validate
    from tagger.training.train import train

    folder = write_feature_dataset(tmp_path / "f")
    cfg = {
        "data": {
            "index": str(folder / "index.csv"),
            "cache": str(folder / "cache"),
            "vocabulary": str(folder / "vocab.json"),
            "task": "singlelabel",
            "valid_split": "validation",
        },
        "head": {"name": "mlp", "hidden": 8, "n_layers": 1},
        "window": 1,
    }
    message = r"config key data.valid_split='validation' selects no tracks .*; the index's splits: train, valid"
    with pytest.raises(DataError, match=message):
        train(validate(cfg), str(tmp_path / "run"), verbose=0)
    assert not (tmp_path / "run" / "model.keras").exists()


def test_a_truncated_model_file_is_named_damaged_not_missing(tmp_path):
    import shutil

    from tagger.training import bundle

    shutil.copytree(os.path.join(bundle.SHIPPED_DIR, "genre10"), tmp_path / "g")
    whole = (tmp_path / "g" / "model.keras").read_bytes()
    (tmp_path / "g" / "model.keras").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"model.keras: a damaged or truncated model file .*Hugging Face cache"):
        bundle.load_head(str(tmp_path / "g"))
