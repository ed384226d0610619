"""tagger tune: search ranges checked before any trial, a killed study resumes, the nested protocol stays honest."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from helpers import GENRES, make_config, write_feature_dataset

from tagger import cli


@pytest.fixture
def feature_data(tmp_path):
    return write_feature_dataset(tmp_path / "data", GENRES)


def _config(data, **extra):
    settings = {
        "head": {"name": "mlp", "hidden": 16, "n_layers": 1},
        "window": 1,
        "batch_size": 16,
        "epochs": 4,
        "steps_per_epoch": 4,
        "mux": {"n_active": 32, "rate": 2.0},
        "early_stopping": {"patience": 3},
        "search": {
            "head.hidden": {"choices": [8, 16]},
            "optimizer.learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
        },
    }
    return make_config(data, data={"task": "singlelabel"}, **{**settings, **extra})


def test_the_train_command_writes_a_run_folder(feature_data, tmp_path):
    """`tagger train CONFIG` end to end on a tiny dataset: the run folder, its metrics and what tagging needs."""
    config = _config(feature_data, epochs=2)
    del config["search"]
    path = tmp_path / "small.json"
    path.write_text(json.dumps(config))
    assert cli.main(["train", str(path), "--run-dir", str(tmp_path / "run"), "--quiet"]) == cli.EXIT_OK
    for name in ("config.json", "model.keras", "labels.json", "thresholds.json", "metrics.json", "bundle.json"):
        assert (tmp_path / "run" / name).exists(), name
    assert json.loads((tmp_path / "run/metrics.json").read_text())["epochs_run"] == 2


def test_tune_writes_the_study_folder(feature_data, tmp_path):
    from tagger.training.tune import tune

    summary = tune(_config(feature_data), str(tmp_path / "study"), trials=3, verbose=0)
    study = tmp_path / "study"
    trials = pd.read_csv(study / "trials.csv")
    assert len(trials) == 3 and set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    best = json.loads((study / "best_config.json").read_text())
    assert "search" not in best and best["head"]["hidden"] == summary["best_params"]["head.hidden"]
    assert (study / "history.png").exists() and sorted(p.name for p in study.glob("trial-*")) == [
        "trial-0000",
        "trial-0001",
        "trial-0002",
    ]
    # the trial that won is an ordinary run folder, scored on the validation split
    metrics = json.loads((study / f"trial-{summary['best_trial']:04d}/metrics.json").read_text())
    assert metrics["valid_score"] == pytest.approx(summary["best_value"]) and metrics["n_valid"] == 30


@pytest.mark.slow
def test_a_killed_study_resumes_where_it_stopped(feature_data, tmp_path):
    import optuna

    cfg_path = tmp_path / "tune.json"
    cfg_path.write_text(json.dumps(_config(feature_data, epochs=6)))
    args = [sys.executable, "-m", "tagger", "tune", str(cfg_path), "--trials", "5", "--study-dir", "study", "--quiet"]
    proc = subprocess.Popen(
        args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    storage = f"sqlite:///{tmp_path / 'study/study.db'}"
    deadline = time.time() + 300

    def finished():
        if not (tmp_path / "study/study.db").exists():
            return []
        try:
            study = optuna.load_study(study_name="search", storage=storage)
            return [t for t in study.get_trials() if t.state.is_finished()]
        except Exception:  # noqa: BLE001 - not created yet, or SQLite busy with the writer: look again
            return []

    while len(finished()) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # no clean-up at all: the worst case
    proc.communicate(timeout=60)
    before = {t.number: (t.params, t.value) for t in finished()}
    assert 2 <= len(before) < 5, "the study finished before it could be killed"
    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    study = optuna.load_study(study_name="search", storage=storage)
    done = [t for t in study.get_trials() if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL]
    assert len(done) == 5  # five in all, not five more
    for number, (params_, value) in before.items():  # the trials finished before the kill are kept, not rerun
        assert (study.trials[number].params, study.trials[number].value) == (params_, value)


@pytest.mark.slow
def test_nested_search_never_scores_on_the_held_out_fold(feature_data, tmp_path):
    from tagger.training.tune import tune

    cfg = _config(feature_data)
    cfg["data"]["cv_folds"] = 3
    summary = tune(cfg, str(tmp_path / "study"), trials=2, verbose=0)
    assert summary["cv_folds"] == 3 and len(summary["fold_scores"]) == 3
    index = pd.read_csv(feature_data / "index.csv")
    for fold in summary["folds"]:
        k, j = fold["fold"], fold["selection_fold"]
        assert j != k
        for trial in (tmp_path / f"study/fold{k}").glob("trial-*"):  # not refit-trial*
            m = json.loads((trial / "metrics.json").read_text())
            # trained without folds k and j, scored on j alone
            assert m["n_train"] == int((~index["fold"].isin([k, j])).sum()) and m["n_valid"] == int(
                (index["fold"] == j).sum()
            )
        refit = json.loads(next((tmp_path / f"study/fold{k}").glob("refit-trial*/metrics.json")).read_text())
        assert refit["n_valid"] == int((index["fold"] == k).sum()) and refit["valid_score"] == fold["held_out_score"]
