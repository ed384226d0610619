"""Hyper-parameter search with Optuna over a config's ``search`` section: ``tagger tune``.

A study folder holds ``study.db`` (Optuna's SQLite storage, so a killed
search resumes where it stopped), one run folder per trial
(``trial-NNNN/``, an ordinary resumable run: a trial cut off by a kill is run
again in its own folder, from its last checkpoint), ``trials.csv``, the plots
``history.png`` and ``importance.png``, and ``best_config.json`` (a normal
config, without the search section). Sampling is TPE, seeded by the config's
``seed``; trials are pruned (median rule) on the per-epoch validation score
that training computes.

Without cross-validation a trial is scored on the config's validation split;
the test split is never read. With ``data.cv_folds`` the search is nested:
for each held-out fold k a study of its own (``fold{k}/``) trains on the
folds other than k and its selection fold j and is scored on j; its best
config is then refit on every fold but k with the schedule its trial chose
and scored on k once (``fold{k}/refit-trialNNNN/``). The held-out scores measure the
whole procedure, search included; no fold ever chooses anything it is
scored on.
"""

import json
import logging
import os

import numpy as np

from .. import locks
from ..exceptions import DataError, ParameterError
from ..records import write_json_atomic
from .config import check_search, validate, with_values
from .dataset import Dataset
from .runs import read_schedule
from .train import fit, refit_fold

__all__ = ["tune", "suggest"]

log = logging.getLogger(__name__)


def suggest(trial, spaces):
    """Draw one value per searched key from an Optuna trial.

    Parameters
    ----------
    trial : optuna.Trial
    spaces : dict
        :func:`tagger.training.config.check_search`'s output.

    Returns
    -------
    dict
        Dotted config key -> value.
    """
    values = {}
    for key, space in spaces.items():
        if space[0] == "choice":
            values[key] = trial.suggest_categorical(key, space[1])
        elif space[0] == "int":
            _, low, high, log, step = space
            values[key] = trial.suggest_int(key, low, high, log=log, step=step or 1)
        else:
            _, low, high, log, step = space
            values[key] = trial.suggest_float(key, float(low), float(high), log=log, step=step)
    return values


def _study(folder, name, seed):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{os.path.abspath(os.path.join(folder, 'study.db'))}"
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=4),
    )
    # trials left RUNNING belong to a process that was killed (the study folder is locked, so none runs now):
    # they are marked failed and queued again with their parameters and run folder, which resumes
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"run_dir": trial.user_attrs.get("run_dir")}, skip_if_exists=False)
        log.warning("trial %d was cut off; queued again (its run folder resumes)", trial.number)
    return study


def _finished(study):
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done))


def _search(cfg, spaces, folder, name, *, trials, timeout, data, verbose):
    """Run one study until it holds ``trials`` finished trials; return it."""
    import optuna

    os.makedirs(folder, exist_ok=True)
    study = _study(folder, name, int(cfg["seed"]))

    def objective(trial):
        values = suggest(trial, spaces)
        run_dir = trial.user_attrs.get("run_dir") or os.path.join(folder, f"trial-{trial.number:04d}")
        trial.set_user_attr("run_dir", run_dir)
        trial_cfg = validate(with_values(cfg, values))

        def report(epoch, score):
            trial.report(score, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: {score:.4f} below the median of earlier trials")

        train_data, valid_data = data
        metrics = fit(trial_cfg, run_dir, train_data=train_data, valid_data=valid_data, verbose=0, on_epoch=report)
        if verbose:
            print(
                f"{name} trial {trial.number}: {metrics['monitor']} {metrics['valid_score']:.4f} {values}", flush=True
            )
        return metrics["valid_score"]

    remaining = trials - _finished(study)
    if remaining > 0:
        study.optimize(
            objective, n_trials=remaining, timeout=timeout, catch=(DataError, ParameterError), gc_after_trial=True
        )
    _report(study, folder)
    return study


def _report(study, folder):
    """trials.csv, and the optimisation history and parameter importance plots."""
    df = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration", "user_attrs"))
    df.to_csv(os.path.join(folder, "trials.csv"), index=False)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import optuna.visualization.matplotlib as vis
    except ImportError as exc:  # matplotlib is optional
        log.warning("no plots (%s)", exc)
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" notices of optuna.visualization.matplotlib
        for file, draw in (
            ("history.png", vis.plot_optimization_history),
            ("importance.png", vis.plot_param_importances),
        ):
            try:
                ax = draw(study)
                ax.figure.tight_layout()
                ax.figure.savefig(os.path.join(folder, file), dpi=100)
                plt.close(ax.figure)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few finished trials for importances
                log.info("no %s (%s)", file, exc)


def _best(study, cfg, folder):
    try:
        best = study.best_trial
    except ValueError:
        raise DataError(f"{folder}: no trial finished; nothing to choose from") from None
    best_cfg = with_values(cfg, best.params)
    best_cfg.pop("search", None)
    write_json_atomic(best_cfg, os.path.join(folder, "best_config.json"))
    return best, best_cfg


def tune(cfg, study_dir, *, trials, timeout=None, verbose=1):
    """Search the config's ``search`` ranges; see the module docstring for the protocol and the folder.

    Parameters
    ----------
    cfg : dict
        A config with a non-empty ``search`` section.
    study_dir : str
    trials : int
        Finished (complete or pruned) trials per study; a resumed study runs
        only the missing ones.
    timeout : float, optional
        Seconds after which no new trial starts (a running one finishes).
    verbose : int

    Returns
    -------
    dict
        The summary written to ``study_dir/summary.json``.
    """
    cfg = validate(cfg)
    if not cfg["search"]:
        raise ParameterError("config key search is empty: name the ranges to search (see tagger.training.tune)")
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise ParameterError(f"trials={trials!r} must be a positive integer")
    if timeout is not None and not timeout > 0:
        raise ParameterError(f"timeout={timeout!r} must be > 0 seconds")
    spaces = check_search(cfg)
    os.makedirs(study_dir, exist_ok=True)
    with locks.exclusive(locks.folder_lock_path(study_dir), what=f"study folder {study_dir}"):
        write_json_atomic(cfg, os.path.join(study_dir, "config.json"))
        if int(cfg["data"]["cv_folds"]) > 1:
            summary = _nested(cfg, spaces, study_dir, trials=trials, timeout=timeout, verbose=verbose)
        else:
            # loaded once for every trial: the data keys are not searchable
            dataset = Dataset(cfg)
            data = (
                dataset.split(cfg["data"]["train_split"], augmented=True),
                dataset.split(cfg["data"]["valid_split"]),
            )
            study = _search(
                cfg, spaces, study_dir, "search", trials=trials, timeout=timeout, data=data, verbose=verbose
            )
            best, _ = _best(study, cfg, study_dir)
            summary = {
                "protocol": "scored on the validation split; the test split is not read",
                "best_value": best.value,
                "best_params": best.params,
                "best_trial": best.number,
                "best_run_dir": best.user_attrs.get("run_dir"),
                "n_trials": _finished(study),
            }
        write_json_atomic(summary, os.path.join(study_dir, "summary.json"))
    return summary


def _nested(cfg, spaces, study_dir, *, trials, timeout, verbose):
    scores, chosen = [], []
    dataset = Dataset(cfg)
    for k, j in dataset.nested_folds():
        folder = os.path.join(study_dir, f"fold{k}")
        data = dataset.selection(k, j)
        study = _search(cfg, spaces, folder, f"fold{k}", trials=trials, timeout=timeout, data=data, verbose=verbose)
        best, best_cfg = _best(study, cfg, folder)
        schedule = read_schedule(best.user_attrs["run_dir"])
        # named by the trial it refits: a longer search that finds a better trial refits that one beside it
        refit_dir = os.path.join(folder, f"refit-trial{best.number:04d}")
        metrics = refit_fold(validate(best_cfg), refit_dir, k, schedule, verbose=0, dataset=dataset)
        scores.append(metrics["valid_score"])
        chosen.append(
            {
                "fold": k,
                "selection_fold": j,
                "params": best.params,
                "selection_score": best.value,
                "epochs": len(schedule),
                "held_out_score": metrics["valid_score"],
            }
        )
        if verbose:
            print(
                f"fold {k}: best on fold {j} {best.value:.4f} {best.params}; held out {metrics['valid_score']:.4f}",
                flush=True,
            )
    return {
        "protocol": "nested: per held-out fold, a search scored on its selection fold, then a refit scored on the"
        " held-out fold once",
        "cv_folds": len(scores),
        "fold_scores": scores,
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "monitor": metrics["monitor"],
        "folds": chosen,
        "n_trials_per_fold": trials,
    }


def main_summary(summary):
    """One line for the CLI."""
    if "fold_scores" in summary:
        return f"nested {summary['monitor']} {summary['mean']:.4f} ± {summary['std']:.4f} over {summary['cv_folds']} held-out folds"
    return f"best validation score {summary['best_value']:.4f} (trial {summary['best_trial']}): {json.dumps(summary['best_params'])}"
