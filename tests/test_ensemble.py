"""Cross-family ensembles: members trained separately, chosen on validation, averaged into one head."""

import json
import signal

import numpy as np
import pandas as pd
import pytest
from helpers import (
    ENTRY_POINTS,
    SMALL_RUN,
    load_in_fresh_interpreter,
    make_config,
    run_in_process,
    train_killed,
    write_config,
)

from tagger import cli
from tagger.exceptions import DataError
from tagger.training import ensemble


def _scores(rng, y, noise):
    """Predictions that follow the labels ``y`` more the smaller ``noise``."""
    return np.clip(0.5 * y + 0.25 + rng.normal(0, noise, y.shape), 0, 1).astype(np.float32)


def test_best_subset_is_chosen_on_the_given_predictions_and_every_candidate_is_written_down():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 6)) < 0.3).astype(np.float32)
    good, fair, bad = _scores(rng, y, 0.2), _scores(rng, y, 0.35), rng.random(y.shape).astype(np.float32)
    chosen, weights, table = ensemble.choose(
        "multilabel", y, {"good": good, "fair": fair, "bad": bad}, select="best_subset"
    )
    assert [row["members"] for row in table] == [
        ["good"],
        ["fair"],
        ["bad"],
        ["good", "fair"],
        ["good", "bad"],
        ["fair", "bad"],
        ["good", "fair", "bad"],
    ]
    from tagger.training.metrics import macro_pr_auc

    for row in table:  # each candidate's score is the metric of its plain average
        mean = np.mean([{"good": good, "fair": fair, "bad": bad}[n] for n in row["members"]], axis=0)
        assert row["score"] == pytest.approx(macro_pr_auc(y, mean), abs=1e-9)
    best = max(table, key=lambda row: row["score"])
    assert chosen == best["members"] and "bad" not in chosen
    assert weights == {n: 1 / len(chosen) for n in chosen}


def test_a_tie_goes_to_the_smaller_subset_and_all_takes_the_given_weights():
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    same = {"a": y * 0.8 + 0.1, "b": y * 0.8 + 0.1}  # every subset scores accuracy 1
    chosen, _, table = ensemble.choose("singlelabel", y, same, select="best_subset")
    assert chosen == ["a"] and len(table) == 3
    chosen, weights, table = ensemble.choose("singlelabel", y, same, select="all", weights={"a": 3, "b": 1})
    assert chosen == ["a", "b"] and weights == {"a": 0.75, "b": 0.25} and len(table) == 1
    np.testing.assert_allclose(
        ensemble.average([same["a"], 1 - same["b"]], [3, 1]), 0.75 * same["a"] + 0.25 * (1 - same["b"])
    )


def test_the_weighted_ensemble_layer_saves_and_averages_as_numpy_does(tmp_path):
    import keras

    from tagger.training.bundle import load_head
    from tagger.training.heads import build_head, predict_tracks

    keras.utils.set_random_seed(0)
    heads = {
        "dense": build_head("dense", 5, "multilabel", hidden=8, n_layers=1),
        "attention": build_head("attention", 5, "multilabel", hidden=8, n_layers=1),
    }
    for name, head in heads.items():
        head.save(tmp_path / f"{name}.keras")
    model = ensemble.combine({n: tmp_path / f"{n}.keras" for n in heads}, {"dense": 0.3, "attention": 0.7})
    model.save(tmp_path / "ensemble.keras")
    loaded = load_head(tmp_path / "ensemble.keras", compile=False)
    rng = np.random.default_rng(1)
    tracks = [rng.normal(size=(n, 128)).astype(np.float32) for n in (1, 4, 10, 23)]
    want = 0.3 * predict_tracks(heads["dense"], tracks) + 0.7 * predict_tracks(heads["attention"], tracks)
    np.testing.assert_allclose(predict_tracks(loaded, tracks), want, atol=1e-6)


def _ensemble_config(prepared):
    """Two small heads of different families, each its own recipe (optimizer, scaler, weight averaging)."""
    members = {
        "dense": {"head": {"name": "dense", "hidden": 32, "n_layers": 1, "standardize": True}},
        "autopool": {
            "head": {"name": "autopool", "hidden": 32, "n_layers": 1, "dropout": 0.2},
            "optimizer": {"name": "adam", "learning_rate": 3e-3, "ema": 0.9},
            "mixup": 0.4,
        },
    }
    return make_config(
        prepared,
        index="index_music.csv",
        vocabulary="vocab_music.json",
        **{**SMALL_RUN, "epochs": 3, "head": {"name": "ensemble", "members": members}},
    )


@pytest.mark.slow
def test_an_ensemble_trains_resumes_after_a_kill_and_is_a_head_everywhere(
    audioset_data, tmp_path, ckpt_path, pca_params, gtzan_files
):
    from tagger.tagging.api import Head
    from tagger.tagging.plots import plot_run
    from tagger.training.bundle import load_head
    from tagger.training.dataset import load_split
    from tagger.training.heads import predict_tracks

    config = write_config(tmp_path / "ensemble.json", _ensemble_config(audioset_data))

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    # the uninterrupted run in this process; the killed one and its resumption in processes of their own
    done = run_in_process(["train", config, "--run-dir", whole, "--quiet"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    # killed after the first epoch of the second member: the first is finished, nothing is averaged yet
    assert train_killed(config, resumed, 4).returncode == -signal.SIGKILL
    assert (resumed / "members/dense/metrics.json").exists()
    assert json.loads((resumed / "members/autopool/checkpoints/epoch-0001.json").read_text())["epoch"] == 1
    assert not (resumed / "members/autopool/metrics.json").exists() and not (resumed / "model.keras").exists()
    done = train_killed(config, resumed, 99)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = (json.loads((folder / "metrics.json").read_text()) for folder in (whole, resumed))
    assert a == b and list(a["members"]) == ["dense", "autopool"] and a["ensemble"]["chosen"] == ["dense", "autopool"]
    for name in ("dense", "autopool"):
        ha, hb = (pd.read_csv(folder / "members" / name / "history.csv") for folder in (whole, resumed))
        np.testing.assert_allclose(ha[["loss", "val_score"]], hb[["loss", "val_score"]], rtol=1e-6)

    # one head whose predictions are the mean of its members'; its score is that mean's, on the validation split
    from tagger.training.metrics import macro_pr_auc

    valid = load_split(json.loads((whole / "config.json").read_text()), "valid")
    members = [
        predict_tracks(load_head(whole / "members" / n, compile=False), valid.embeddings) for n in ("dense", "autopool")
    ]
    ours = predict_tracks(load_head(whole, compile=False), valid.embeddings)
    np.testing.assert_allclose(ours, np.mean(members, axis=0), atol=1e-6)
    np.testing.assert_allclose(predict_tracks(load_head(resumed, compile=False), valid.embeddings), ours, atol=1e-6)
    assert a["valid_score"] == pytest.approx(macro_pr_auc(valid.y, np.mean(members, axis=0)), abs=1e-6)
    assert a["members"]["dense"]["valid_score"] == pytest.approx(macro_pr_auc(valid.y, members[0]), abs=1e-6)

    with pytest.raises(DataError, match="an ensemble; its members trained the epochs: plot one of .*members/autopool"):
        plot_run(str(whole))
    assert cli.main(["plot", "run", str(whole / "members" / "dense")]) == 0

    # evaluate, export with its card, every loading entry point in a fresh interpreter, tag local and Beam
    assert cli.main(["evaluate", str(whole), "--split", "valid"]) == 0
    evaluated = json.loads((whole / "eval/valid-head/metrics.json").read_text())
    assert evaluated["macro_pr_auc"] == pytest.approx(a["valid_score"], abs=1e-6)
    bundle = tmp_path / "bundle"
    assert cli.main(["export", str(whole), "--out", str(bundle)]) == 0
    card = (bundle / "MODEL.md").read_text()
    assert "ensemble of dense (dense) + autopool (autopool)" in card, card
    for entry in ENTRY_POINTS:
        counts = load_in_fresh_interpreter(entry, {"run": whole, "bundle": bundle})
        assert counts["run"] == counts["bundle"] == load_head(whole, compile=False).count_params()
    assert Head(str(bundle)).meta["embedding"] == "postprocessed"
    clips = [str(p) for p in gtzan_files[:2]]
    common = [*clips, "--model", str(bundle), "--weights", ckpt_path, "--pca", str(pca_params), "--no-progress"]
    assert cli.main(["tag", *common, "--out", str(tmp_path / "local.csv"), "--workers", "1"]) == 0
    pytest.importorskip("apache_beam")
    assert cli.main(["tag", *common, "--out", str(tmp_path / "beam.csv"), "--runner", "beam"]) == 0
    local = pd.read_csv(tmp_path / "local.csv").set_index("path").sort_index()
    beam = pd.concat(pd.read_csv(p) for p in tmp_path.glob("beam-*-of-*.csv")).set_index("path").sort_index()
    assert len(local) == 2 and list(beam.index) == list(local.index)
    np.testing.assert_allclose(beam.filter(like="p_").to_numpy(), local.filter(like="p_").to_numpy(), atol=1e-4)
