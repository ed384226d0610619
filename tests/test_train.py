"""Training on the real AudioSet features in ../shared: prepare, train, evaluate, resume, bad configs."""

import json
import signal

import numpy as np
import pandas as pd
import pytest
from helpers import SMALL_RUN, make_config, run_in_process, train_killed

from tagger import cli
from tagger.exceptions import DataError, ParameterError
from tagger.training.config import validate


@pytest.mark.slow
def test_prepared_vocabularies(audioset_data):
    from tagger.datasets.common import read_vocabulary

    music = read_vocabulary(audioset_data / "vocab_music.json")
    assert len(music) == 150 and "Music" in music and "Rock music" in music
    assert len(read_vocabulary(audioset_data / "vocab_527.json")) == 527
    assert len(pd.read_csv(audioset_data / "index_527.csv")) == 22160
    genre = pd.read_csv(audioset_data / "index_genre10.csv")
    assert len(genre) == 540 and not genre["labels"].str.contains("|", regex=False).any()
    assert sorted(genre["fold"].unique()) == [0, 1, 2, 3, 4]
    # folds and splits are grouped by video
    assert genre.groupby("video_id")["fold"].nunique().max() == 1
    idx = pd.read_csv(audioset_data / "index_music.csv")
    assert idx.groupby("video_id")["split"].nunique().max() == 1
    assert set(idx["split"]) == {"train", "valid"}


def small_config(prepared, **over):
    data = over.pop("data", None)
    config = make_config(prepared, index="index_music.csv", vocabulary="vocab_music.json", **{**SMALL_RUN, **over})
    if data is not None:
        config["data"] = data
    return config


@pytest.mark.slow
def test_train_and_evaluate_end_to_end(audioset_data, tmp_path, capsys):
    path = tmp_path / "small.json"
    path.write_text(json.dumps(small_config(audioset_data)))
    run = tmp_path / "run"
    assert cli.main(["train", str(path), "--run-dir", str(run), "--quiet"]) == 0
    for name in (
        "config.json",
        "history.csv",
        "model.keras",
        "labels.json",
        "thresholds.json",
        "metrics.json",
        "version.json",
    ):
        assert (run / name).exists(), name
    # AudioSet's released features are postprocessed (uint8): tagging with this run must postprocess too
    assert json.loads((run / "bundle.json").read_text())["embedding"] == "postprocessed"
    pairs = sorted(p.stem for p in (run / "checkpoints").glob("epoch-*.keras"))
    assert pairs and all((run / "checkpoints" / f"{p}.json").exists() for p in pairs) and len(pairs) <= 2
    assert any((run / "tensorboard").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["valid_score"] > 0.15  # far above chance (about 0.02 macro PR-AUC for 150 rare tags)
    assert cli.main(["evaluate", str(run), "--split", "valid", "--mode", "soft"]) == 0
    out = run / "eval" / "valid-soft"
    per_tag = pd.read_csv(out / "per_tag.csv")
    assert len(per_tag) == 150 and {"roc_auc", "pr_auc", "precision", "recall", "f1", "support", "threshold"} <= set(
        per_tag.columns
    )
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["macro_roc_auc"] > 0.7 and (out / "pr_auc.png").exists()


def genre_config(prepared, **over):
    return small_config(
        prepared,
        data={
            "index": str(prepared / "index_genre10.csv"),
            "cache": str(prepared / "cache"),
            "vocabulary": str(prepared / "vocab_genre10.json"),
            "task": "singlelabel",
            "cv_folds": 2,
        },
        **over,
    )


@pytest.mark.slow
def test_genre_nested_cross_validation_and_confusion(audioset_data, tmp_path):
    from tagger.training.evaluate import evaluate
    from tagger.training.runs import read_schedule
    from tagger.training.train import train

    cfg = validate(genre_config(audioset_data, epochs=3, head={"name": "dense", "hidden": 32, "n_layers": 1}))
    summary = train(cfg, str(tmp_path / "cv"), verbose=0)
    assert len(summary["fold_scores"]) == 2 and summary["mean"] > 0.3  # ten classes: chance is about 0.1
    folds = pd.read_csv(audioset_data / "index_genre10.csv")["fold"]
    for k, (held_out, selection) in enumerate([(0, 1), (1, 2)]):
        select = json.loads((tmp_path / "cv" / f"fold{held_out}-select" / "metrics.json").read_text())
        refit = json.loads((tmp_path / "cv" / f"fold{held_out}" / "metrics.json").read_text())
        # the selection run never sees the held-out fold: trained without both folds, stopped on the selection fold
        assert (
            select["n_train"] == (~folds.isin([held_out, selection])).sum()
            and select["n_valid"] == (folds == selection).sum()
        )
        # the refit trains on every other fold for the chosen epochs, and is only scored on the held-out fold
        schedule = read_schedule(str(tmp_path / "cv" / f"fold{held_out}-select"))
        assert len(schedule) == select["best_epoch"] + 1 == summary["fold_epochs"][k]
        assert json.loads((tmp_path / "cv" / f"fold{held_out}" / "schedule.json").read_text()) == schedule
        assert refit["n_train"] == (folds != held_out).sum() and refit["n_valid"] == (folds == held_out).sum()
        assert refit["epochs_run"] == len(schedule) and refit["valid_score"] == summary["fold_scores"][k]
    report = evaluate(str(tmp_path / "cv" / "fold0"), mode="hard")  # on fold 0, which it held out
    assert np.array(report["confusion"]).shape == (10, 10)
    assert report["split"] == "fold0" and report["n_clips"] == (folds == 0).sum()


@pytest.mark.slow
def test_refit_follows_its_schedule_and_keeps_the_last_epoch(audioset_data, tmp_path):
    from tagger.training.dataset import load_split
    from tagger.training.train import fit

    cfg = validate(genre_config(audioset_data, epochs=9, head={"name": "dense", "hidden": 32, "n_layers": 1}))
    schedule = [1e-3, 1e-3, 5e-4]
    train_data, valid_data = load_split(cfg, None, exclude_fold=0), load_split(cfg, None, fold=0)
    metrics = fit(
        cfg, str(tmp_path / "refit"), train_data=train_data, valid_data=valid_data, schedule=schedule, verbose=0
    )
    history = pd.read_csv(tmp_path / "refit" / "history.csv")
    # exactly the schedule's epochs and rates, whatever the validation scores did; the last epoch is the model
    np.testing.assert_allclose(history["lr"], schedule, rtol=1e-6)
    assert metrics["best_epoch"] == 2 and metrics["epochs_run"] == 3
    assert metrics["valid_score"] == pytest.approx(history["val_score"].iloc[-1], abs=1e-9)
    with pytest.raises(DataError, match="different schedule.json"):
        fit(cfg, str(tmp_path / "refit"), train_data=train_data, valid_data=valid_data, schedule=[1e-3], verbose=0)
    for bad in ([], [1e-3, 0.0]):
        with pytest.raises(ParameterError, match="schedule="):
            fit(cfg, str(tmp_path / "bad"), train_data=train_data, valid_data=valid_data, schedule=bad, verbose=0)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_nested_baseline_chooses_C_on_the_selection_fold(audioset_data):
    from tagger.training.baseline import logistic_baseline, nested_cv_baseline
    from tagger.training.dataset import load_split

    cfg = genre_config(audioset_data)
    cfg["data"]["cv_folds"] = 3
    cfg = validate(cfg)
    grid = (0.001, 0.1)
    result = nested_cv_baseline(cfg, grid)
    assert len(result["fold_scores"]) == 3
    for k, j, C, score in zip((0, 1, 2), (1, 2, 3), result["fold_C"], result["fold_scores"]):
        inner = [
            logistic_baseline(
                load_split(cfg, None, exclude_fold=(k, j)), load_split(cfg, None, fold=j), "singlelabel", C=c
            )
            for c in grid
        ]
        assert C == grid[int(np.argmax(inner))]
        assert score == logistic_baseline(
            load_split(cfg, None, exclude_fold=k), load_split(cfg, None, fold=k), "singlelabel", C=C
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    "folds,match", [(7, "data.cv_folds=7: the index .* has only 5 folds"), (2, "at least 3 folds")]
)
def test_bad_fold_settings_fail_before_training(audioset_data, tmp_path, folds, match):
    cfg = genre_config(audioset_data)
    cfg["data"]["cv_folds"] = folds
    if folds == 2:  # an index with only two folds
        index = pd.read_csv(audioset_data / "index_genre10.csv")
        index["fold"] = index["fold"] % 2
        index.to_csv(tmp_path / "two_folds.csv", index=False)
        cfg["data"]["index"] = str(tmp_path / "two_folds.csv")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    from tagger.training.train import train

    with pytest.raises(DataError, match=match):
        train(validate(cfg), str(tmp_path / "run"), verbose=0)
    assert cli.main(["train", str(path), "--run-dir", str(tmp_path / "run")]) == cli.EXIT_ERROR
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_killed_and_resumed_run_matches_uninterrupted(audioset_data, tmp_path):
    # with every stateful or random part of the recipe: input scaler, mixup, dropout, weight averaging,
    # an ensemble's per-sample choice of member
    cfg = small_config(
        audioset_data,
        head={"name": "dense", "hidden": 32, "n_layers": 2, "dropout": 0.2, "standardize": True, "members": 2},
        epochs=4,
        mixup=0.4,
        optimizer={"name": "adam", "learning_rate": 1e-3, "ema": 0.9},
    )
    cfg["early_stopping"] = {"patience": 10}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))

    # the uninterrupted run in this process; the killed one and its resumption in processes of their own
    whole = run_in_process(["train", path, "--run-dir", tmp_path / "whole", "--quiet"], cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = train_killed(path, tmp_path / "resumed", 2)
    assert killed.returncode == -signal.SIGKILL
    assert json.loads((tmp_path / "resumed/checkpoints/epoch-0002.json").read_text())["epoch"] == 2
    assert not (tmp_path / "resumed/checkpoints/epoch-0003.json").exists()
    assert not (tmp_path / "resumed/metrics.json").exists()
    resumed = train_killed(path, tmp_path / "resumed", 99)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = json.loads((tmp_path / "whole/metrics.json").read_text())
    b = json.loads((tmp_path / "resumed/metrics.json").read_text())
    assert a == b
    ha = pd.read_csv(tmp_path / "whole/history.csv")
    hb = pd.read_csv(tmp_path / "resumed/history.csv")
    assert len(ha) == len(hb) == 4
    np.testing.assert_allclose(ha[["loss", "val_score", "lr"]], hb[["loss", "val_score", "lr"]], rtol=1e-6)


@pytest.mark.slow
def test_same_seed_same_metrics(audioset_data, tmp_path):
    from tagger.training.train import train

    cfg = validate(small_config(audioset_data, epochs=2))
    a = train(cfg, str(tmp_path / "a"), verbose=0)
    b = train(cfg, str(tmp_path / "b"), verbose=0)
    assert a == b


@pytest.mark.slow
def test_missing_path_and_empty_vocabulary(audioset_data, tmp_path):
    from tagger.training.train import fit

    cfg = small_config(audioset_data)
    cfg["data"] = {**cfg["data"], "cache": str(tmp_path / "nowhere")}
    with pytest.raises(DataError, match="data.cache.*nowhere"):
        validate(cfg)
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps(["No such tag"]))
    cfg = validate(
        {**small_config(audioset_data), "data": {**small_config(audioset_data)["data"], "vocabulary": str(vocab)}}
    )
    with pytest.raises(DataError, match="no tracks with labels"):
        fit(cfg, str(tmp_path / "run"), verbose=0)
    assert not (tmp_path / "run").exists()


def test_the_logistic_baseline_on_separable_synthetic_clips():
    """The unit tier's baseline test: mean pooling, a separable single-label task, a tag with one class only."""
    from tagger.training.baseline import logistic_scores, mean_pool

    rng = np.random.default_rng(0)
    clips = [rng.normal(3.0 * (i % 2), 0.3, size=(5, 4)) for i in range(40)]  # class = i % 2, far apart
    x = mean_pool(clips)
    assert x.shape == (40, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], clips[0].mean(axis=0), rtol=1e-6)
    y = np.eye(2, dtype=np.float32)[np.arange(40) % 2]
    single = logistic_scores(x[:30], y[:30], x[30:], "singlelabel")
    assert (single.argmax(1) == np.arange(30, 40) % 2).all()
    np.testing.assert_allclose(single.sum(1), 1.0, rtol=1e-5)
    multi = np.concatenate([y, np.ones((40, 1), np.float32)], axis=1)  # the third tag is on everywhere
    scores = logistic_scores(x[:30], multi[:30], x[30:], "multilabel")
    assert ((scores[:, :2] > 0.5) == multi[30:, :2].astype(bool)).all()
    assert (scores[:, 2] == 1.0).all()  # no negative to learn from: its training rate
