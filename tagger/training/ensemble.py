"""Cross-family ensembles: members trained separately, each by its own recipe, averaged into one head.

An ensemble config has ``head.name`` ``"ensemble"`` and ``head.members``, a
mapping of member names to configs (a config file, or settings laid over the
ensemble's own; :func:`tagger.training.config.ensemble_members`). Each member
trains as any run does, in its own resumable run folder, on the ensemble's
data; then the members' validation predictions choose what is averaged
(``head.select``):

* ``"all"``: every member, equally weighted or by ``head.weights``;
* ``"best_subset"``: every non-empty subset of the members, equally weighted,
  scored on the validation split (macro PR-AUC or accuracy); the best one is
  kept, the smaller one on a tie. Every subset's score is written down.

The run folder::

    RUN/config.json, labels.json, version.json   as in any run
    RUN/members/<name>/                          each member's own run folder
    RUN/model.keras                              the average of the chosen members (one head)
    RUN/thresholds.json                          multi-label: chosen on the validation split
    RUN/metrics.json                             the ensemble's score, each member's, the selection
    RUN/bundle.json                              what the members were trained on (the same data)

``model.keras`` is one Keras model with the usual inputs ``[x, mask]`` whose
:class:`tagger.training.layers.Ensemble` layer averages the members' clip
probabilities, so tagging, evaluation, export and the Beam path use it as any
head. A killed ensemble resumes: finished members are reused as they are
(a member folder refuses a changed config), an unfinished one resumes from
its checkpoint. A refit (``schedule``, :func:`tagger.training.runs.read_schedule`
of a finished ensemble) trains only the members chosen there, each on its own
schedule, and keeps that choice: the data it is scored on choose nothing.
"""

import itertools
import os

import numpy as np

from .. import locks
from ..exceptions import DataError, ParameterError
from ..records import write_json_atomic
from . import runs
from .bundle import load_head, read_meta, write_meta
from .config import ensemble_members
from .heads import predict_tracks

__all__ = ["fit", "choose", "combine", "average"]


def average(predictions, weights=None):
    """Weighted mean of member predictions.

    Parameters
    ----------
    predictions : sequence of np.ndarray, each (n_tracks, n_outputs)
    weights : sequence of float, optional
        One per member (normalised here); equal when None.

    Returns
    -------
    np.ndarray, shape (n_tracks, n_outputs), float32
    """
    stacked = np.stack([np.asarray(p, np.float64) for p in predictions])
    w = np.ones(len(stacked)) if weights is None else np.asarray(weights, np.float64)
    return np.tensordot(w / w.sum(), stacked, axes=1).astype(np.float32)


def choose(task, y, predictions, *, select="all", weights=None):
    """The members to average, chosen on validation predictions, and the score of every candidate.

    Parameters
    ----------
    task : {'multilabel', 'singlelabel'}
    y : np.ndarray, shape (n_tracks, n_outputs)
        The validation split's labels.
    predictions : dict
        Member name -> its validation predictions (n_tracks, n_outputs).
    select : {'all', 'best_subset'}
    weights : dict, optional
        Member name -> weight (``select="all"`` only).

    Returns
    -------
    chosen : list of str
        In the order of ``predictions``.
    weights : dict
        Chosen member -> normalised weight.
    table : list of dict
        ``{"members": [...], "score": float}`` for every candidate scored.
    """
    from .metrics import monitor_score

    names = list(predictions)
    if select == "all":
        w = np.array([1.0 if weights is None else float(weights[n]) for n in names])
        score = monitor_score(task, y, average([predictions[n] for n in names], w))
        return names, dict(zip(names, map(float, w / w.sum()))), [{"members": names, "score": float(score)}]
    if select != "best_subset":
        raise ParameterError(f"select={select!r} must be 'all' or 'best_subset'")
    table = []
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(names, size):
            score = monitor_score(task, y, average([predictions[n] for n in subset]))
            table.append({"members": list(subset), "score": float(score)})
    # the best score; on a tie the fewer members, then the earlier subset (deterministic)
    best = max(range(len(table)), key=lambda i: (table[i]["score"], -len(table[i]["members"]), -i))
    chosen = table[best]["members"]
    return chosen, {n: 1.0 / len(chosen) for n in chosen}, table


def combine(member_dirs, weights=None):
    """One head averaging the saved heads of ``member_dirs``: inputs ``[x, mask]``, output their (weighted) mean.

    Parameters
    ----------
    member_dirs : dict
        Member name -> run or bundle folder (or ``.keras`` file) of a head over the same inputs.
    weights : dict, optional
        Member name -> weight; equal when None.

    Returns
    -------
    keras.Model
    """
    import keras

    from .layers import Ensemble

    names = list(member_dirs)
    models = [load_head(member_dirs[n], compile=False) for n in names]
    for name, model in zip(names, models):
        model.name = f"member_{name}"
    shapes = {tuple(m.outputs[0].shape[1:]) for m in models}
    if len(shapes) != 1:
        raise DataError(f"ensemble members {names} have different outputs {sorted(shapes)}")
    x = keras.Input(models[0].inputs[0].shape[1:], name="x")
    mask = keras.Input((None,), name="mask")
    w = None if weights is None else [float(weights[n]) for n in names]
    out = Ensemble(models, weights=w, name="ensemble")([x, mask])
    return keras.Model([x, mask], out, name="ensemble")


def _check_schedule(schedule, members):
    chosen = schedule.get("members") if isinstance(schedule, dict) else None
    if not isinstance(chosen, dict) or not chosen or any(n not in members for n in chosen):
        raise ParameterError(
            f"schedule={schedule!r}: an ensemble's refit takes {{'members': {{name: learning rates}}}} naming"
            f" some of its members ({', '.join(members)}), as runs.read_schedule returns"
        )
    return chosen


def fit(cfg, run_dir, labels, train_data, valid_data, *, fit_member, schedule=None, verbose=1):
    """Train an ensemble config's members into ``run_dir/members/`` and average the chosen ones.

    Called by :func:`tagger.training.train.fit` (which loads and checks the data) for ensemble configs,
    which passes itself as ``fit_member``: each member is a run like any other.

    Parameters
    ----------
    cfg : dict
        A validated ensemble config.
    run_dir : str
    labels : list of str
    train_data, valid_data : tagger.training.dataset.Split
    fit_member : callable
        ``fit_member(cfg, run_dir, *, train_data, valid_data, schedule, verbose)``: trains one member.
    schedule : dict, optional
        ``{"members": {name: learning rates}}``: a refit of those members only, averaged as they are.
    verbose : int

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    from .metrics import monitor_score

    members = ensemble_members(cfg)
    refit = _check_schedule(schedule, members) if schedule is not None else None
    task, head = cfg["data"]["task"], cfg["head"]
    os.makedirs(run_dir, exist_ok=True)
    with locks.exclusive(locks.folder_lock_path(run_dir), what=f"run folder {run_dir}"):
        runs.init_run(run_dir, cfg, labels, schedule, checkpoints=False)
        names = list(refit) if refit else list(members)
        predictions, results = {}, {}
        for i, name in enumerate(names):
            folder = os.path.join(run_dir, "members", name)
            if verbose:
                print(f"member {i + 1}/{len(names)} {name!r} ({members[name]['head']['name']}):", flush=True)
            results[name] = fit_member(
                members[name],
                folder,
                train_data=train_data,
                valid_data=valid_data,
                schedule=refit[name] if refit else None,
                verbose=verbose,
            )
            predictions[name] = predict_tracks(load_head(folder, compile=False), valid_data.embeddings)
        # a refit averages the members it was given: the choice was made where the schedules were
        select = "all" if refit else head["select"]
        chosen, weights, table = choose(task, valid_data.y, predictions, select=select, weights=head["weights"])
        if refit:
            table = []
        # every member trained on these same data, so each one's bundle.json records what the ensemble needs
        meta = read_meta(os.path.join(run_dir, "members", names[0]))
        write_meta(
            run_dir,
            embedding=meta["embedding"],
            task=task,
            window=cfg["window"],
            frontend=meta.get("frontend"),
            provenance=meta.get("provenance"),
        )
        model = combine({n: os.path.join(run_dir, "members", n) for n in chosen}, weights)
        runs.save_model(model, os.path.join(run_dir, "model.keras"))
        # what the saved model outputs (its Ensemble layer's weighted mean), from the predictions made above
        score = average([predictions[n] for n in chosen], [weights[n] for n in chosen])
        runs.write_thresholds(run_dir, labels, task, valid_data.y, score)
        metrics = {
            "valid_score": float(monitor_score(task, valid_data.y, score)),
            "monitor": "macro_pr_auc" if task == "multilabel" else "accuracy",
            "members": {
                n: {
                    "head": members[n]["head"]["name"],
                    "config": head["members"][n] if isinstance(head["members"][n], str) else "inline",
                    **{k: results[n][k] for k in ("valid_score", "best_epoch", "epochs_run", "selection")},
                }
                for n in names
            },
            "ensemble": {"select": head["select"], "chosen": chosen, "weights": weights, "candidates": table},
            "n_train": len(train_data.embeddings),
            "n_valid": len(valid_data.embeddings),
            "selection": "refit: each member on its fixed schedule, the members chosen before"
            if refit
            else f"each member its best validation epoch; members: {head['select']} on the validation split",
        }
        write_json_atomic(metrics, os.path.join(run_dir, "metrics.json"))
        return metrics
