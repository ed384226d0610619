"""tagger tune: search ranges checked before any trial, a killed study resumes, the nested protocol stays honest."""

import json
import signal
import subprocess
import sys
import textwrap

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


#: ``python -c TUNE_KILLER ARGS...`` runs ``tagger ARGS...`` and SIGKILLs itself in the third trial, just after its
#: first epoch's checkpoint is in place: two trials finished, one half done (a kill decided by the study's own
#: progress, not by a poll of the test that a fast machine outruns)
TUNE_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import optuna
    from tagger import cli
    real_optimize, real_replace, armed = optuna.study.Study.optimize, os.replace, []
    def replace(src, dst):
        real_replace(src, dst)
        if armed and "checkpoints" in str(dst) and str(dst).endswith(".json"):
            os.kill(os.getpid(), signal.SIGKILL)
    def optimize(self, objective, *args, **kwargs):
        def third_trial_killed(trial):
            if trial.number == 2:
                armed.append(True)
            return objective(trial)
        return real_optimize(self, third_trial_killed, *args, **kwargs)
    os.replace, optuna.study.Study.optimize = replace, optimize
    sys.exit(cli.main(sys.argv[1:]))
    """
)


@pytest.mark.slow
def test_a_killed_study_resumes_where_it_stopped(feature_data, tmp_path):
    import optuna

    cfg_path = tmp_path / "tune.json"
    cfg_path.write_text(json.dumps(_config(feature_data, epochs=6)))
    args = ["tune", str(cfg_path), "--trials", "5", "--study-dir", "study", "--quiet"]
    killed = subprocess.run(
        [sys.executable, "-c", TUNE_KILLER, *args], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    storage = f"sqlite:///{tmp_path / 'study/study.db'}"
    study = optuna.load_study(study_name="search", storage=storage)
    before = {t.number: (t.params, t.value) for t in study.get_trials() if t.state.is_finished()}
    assert sorted(before) == [0, 1] and len(study.get_trials()) == 3  # the third was running: no clean-up at all
    assert (tmp_path / "study/trial-0002/checkpoints/epoch-0001.json").exists()
    again = subprocess.run(
        [sys.executable, "-m", "tagger", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
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
