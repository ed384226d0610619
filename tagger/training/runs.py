"""Run-folder I/O: the frozen config, checkpoints, the history and the refit schedule.

A run folder (:mod:`.train`) holds ``config.json`` (frozen), ``labels.json``,
``version.json``, ``history.csv``, ``checkpoints/epoch-NNNN.keras`` +
``epoch-NNNN.json`` (the last two pairs), ``model.keras``, ``thresholds.json``,
``metrics.json`` and, for a refit, ``schedule.json``. Every file is replaced
atomically, so a kill at any moment leaves a folder a rerun resumes from.
"""

import csv
import json
import logging
import os
import sys
import time
import types

from ..exceptions import DataError
from ..records import write_json_atomic
from ..version import __version__
from .bundle import load_head

__all__ = [
    "init_run",
    "save_checkpoint",
    "latest_checkpoint",
    "checkpoint_epochs",
    "append_history",
    "save_model",
    "read_schedule",
    "schedule_epochs",
    "write_thresholds",
    "Scalars",
]

log = logging.getLogger(__name__)


def _freeze(run_dir, name, value):
    """Write ``name`` once; a run folder resumed with a different value is refused.

    A folder in which no epoch finished yet (a run that failed before
    training) takes the new value: nothing was made with the old one.
    """
    frozen = os.path.join(run_dir, name)
    if os.path.exists(frozen):
        with open(frozen, encoding="utf-8") as f:
            previous = json.load(f)
        if previous == json.loads(json.dumps(value)):
            return
        made = ("history.csv", "model.keras", "members")  # an epoch, a kept head, an ensemble's members
        if checkpoint_epochs(os.path.join(run_dir, "checkpoints")) or any(
            os.path.exists(os.path.join(run_dir, name)) for name in made
        ):
            raise DataError(
                f"{run_dir}: the run folder holds a different {name} and has trained with it; use a new"
                " run folder (or delete this one to start over)"
            )
        log.info("%s: no epoch finished yet; replacing its %s", run_dir, name)
    write_json_atomic(value, frozen)


def init_run(run_dir, cfg, labels, schedule=None, *, checkpoints=True):
    """Make the folder and write (or check, on a resume) its config, schedule, labels and version.

    ``checkpoints``: make its ``checkpoints/`` folder (an ensemble's run folder has none: its members do).
    """
    os.makedirs(os.path.join(run_dir, "checkpoints") if checkpoints else run_dir, exist_ok=True)
    _freeze(run_dir, "config.json", cfg)
    if schedule is not None:
        _freeze(run_dir, "schedule.json", schedule)
    write_json_atomic(labels, os.path.join(run_dir, "labels.json"))
    write_json_atomic({"tagger": __version__}, os.path.join(run_dir, "version.json"))


def write_thresholds(run_dir, labels, task, y, scores):
    """Choose a kept head's per-tag thresholds on its validation predictions and write ``thresholds.json``.

    Multi-label: each tag's F1-maximising threshold (:func:`.metrics.choose_thresholds`); single-label:
    none (null), the class with the highest probability is the answer.

    Returns
    -------
    np.ndarray, shape (n_labels,)
        NaN where none was chosen.
    """
    import numpy as np

    from .metrics import choose_thresholds

    thresholds = choose_thresholds(y, scores) if task == "multilabel" else np.full(len(labels), np.nan)
    write_json_atomic(
        dict(zip(labels, [None if np.isnan(t) else float(t) for t in thresholds])),
        os.path.join(run_dir, "thresholds.json"),
    )
    return thresholds


def schedule_epochs(schedule):
    """Epochs of a refit schedule: a count, or for an ensemble's, member name -> count."""
    if isinstance(schedule, dict):
        return {name: len(lrs) for name, lrs in schedule["members"].items()}
    return len(schedule)


def checkpoint_epochs(ckpt_dir):
    """Epochs with a complete checkpoint pair in ``ckpt_dir``, oldest first."""
    if not os.path.isdir(ckpt_dir):
        return []
    names = set(os.listdir(ckpt_dir))
    return sorted(
        int(n[6:10]) for n in names if n.startswith("epoch-") and n.endswith(".json") and n[:-5] + ".keras" in names
    )


def save_checkpoint(ckpt_dir, model, state, keep=2):
    """Write ``epoch-NNNN.keras`` then ``epoch-NNNN.json`` (each atomically); keep the last ``keep`` pairs.

    A pair is self-contained, so a copy of the folder taken at any moment
    (a bucket sync during training) holds at least one complete pair.
    """
    stem = os.path.join(ckpt_dir, f"epoch-{state['epoch']:04d}")
    save_model(model, stem + ".keras")
    write_json_atomic(state, stem + ".json")
    for old in checkpoint_epochs(ckpt_dir)[:-keep]:
        for ext in (".json", ".keras"):
            path = os.path.join(ckpt_dir, f"epoch-{old:04d}{ext}")
            if os.path.exists(path):
                os.unlink(path)


def latest_checkpoint(ckpt_dir):
    """(model, state) of the newest complete, loadable checkpoint pair, or None."""
    for epoch in reversed(checkpoint_epochs(ckpt_dir)):
        stem = os.path.join(ckpt_dir, f"epoch-{epoch:04d}")
        try:
            with open(stem + ".json", encoding="utf-8") as f:
                state = json.load(f)
            return load_head(stem + ".keras"), state
        except Exception as exc:  # noqa: BLE001 - a damaged pair: fall back to the one before
            log.warning("checkpoint %s unusable (%s); trying an older one", stem, exc)
    return None


def save_model(model, path):
    """``model.save`` through a temporary file: a kill never leaves a half-written model at ``path``."""
    tmp = path[: -len(".keras")] + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def append_history(path, row, epoch):
    """Append one epoch; a row for this epoch left by a killed run is replaced."""
    rows = []
    if os.path.exists(path):
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < epoch]
    rows.append(row)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def read_schedule(run_dir):
    """Learning rate of every epoch up to a finished run's best one: the refit schedule of :func:`.train.fit`.

    Returns
    -------
    list of float, or dict
        ``best_epoch + 1`` learning rates, as logged in ``history.csv``; for an
        ensemble (:mod:`.ensemble`), ``{"members": {name: learning rates}}`` of the
        members it chose.
    """
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    if "ensemble" in metrics:
        chosen = metrics["ensemble"]["chosen"]
        return {"members": {name: read_schedule(os.path.join(run_dir, "members", name)) for name in chosen}}
    best = int(metrics["best_epoch"])
    with open(os.path.join(run_dir, "history.csv"), newline="", encoding="utf-8") as f:
        lrs = {int(r["epoch"]): float(r["lr"]) for r in csv.DictReader(f)}
    if any(e not in lrs for e in range(best + 1)):
        raise DataError(f"{run_dir}: history.csv lacks epochs up to the best one ({best})")
    return [lrs[e] for e in range(best + 1)]


class Scalars:
    """TensorBoard scalars of a run (``run_dir/tensorboard``), written on every Keras backend.

    TensorBoard's own event writer is used: on TensorFlow it writes through
    ``tf.io.gfile``; on JAX and PyTorch through TensorBoard's TensorFlow stub
    (the ``tensorboard.compat.notf`` switch that TensorBoard's no-TensorFlow
    build sets), so TensorFlow is never imported for it.
    """

    def __init__(self, run_dir, *, backend="tensorflow"):
        if backend != "tensorflow" and "tensorflow" not in sys.modules:
            sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event, self._summary = event_pb2.Event, summary_pb2.Summary
        self._writer = EventFileWriter(os.path.join(run_dir, "tensorboard"))

    def add(self, step, **values):
        """Scalars of one step (an epoch), e.g. ``add(3, loss=0.4, val_score=0.7)``; flushed at once."""
        summary = self._summary(value=[self._summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
        self._writer.add_event(self._event(wall_time=time.time(), step=int(step), summary=summary))
        self._writer.flush()

    def close(self):
        self._writer.close()
