"""Training a head on cached embeddings into a self-describing, resumable run folder.

The run folder's files are written by :mod:`.runs` (``model.keras`` is the
best epoch on validation; ``tensorboard/`` logs loss, score and learning
rate); the data come from :mod:`.dataset`. Cross-validation is nested (:func:`cross_validate`):
the fold a head is scored on never chooses its epochs. A killed run restarted
on the same folder resumes from its last checkpoint and ends as an
uninterrupted run would: each epoch's data stream and random state derive
from (seed, epoch) alone, and the early stopping and learning-rate schedule
state is checkpointed with the model.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from typing import Any, Callable

import numpy as np

from .. import backend, locks
from ..embedding import cache, registry
from ..exceptions import DataError, ParameterError
from ..records import write_json_atomic
from . import ensemble, runs
from .bundle import load_head, write_meta
from .config import ENSEMBLE, OPTIMIZERS, data_path, validate
from .dataset import Dataset, check_same_provenance, read_vocabulary
from .heads import HEADS, PATCH_HEADS, build_head, input_stats, loss_for, predict_tracks, prior_bias

__all__ = ["build_run_head", "fit", "epoch_seed", "cross_validate", "refit_fold", "train"]

log = logging.getLogger(__name__)


def _optimizer(cfg: dict[str, Any]) -> Any:
    import keras

    opt = cfg["optimizer"]
    make = getattr(keras.optimizers, OPTIMIZERS[opt["name"]])
    if cfg["trunk"]["name"]:  # a fine-tuned VGGish steps at a fraction of the head's learning rate
        from .finetune import optimizer

        make = lambda **kw: optimizer(opt["name"], trunk_scale=cfg["trunk"]["learning_rate_scale"], **kw)  # noqa: E731
    if not opt["ema"]:
        return make(learning_rate=opt["learning_rate"])
    # the averaged weights replace the model's on the last step of every epoch
    return make(
        learning_rate=opt["learning_rate"],
        use_ema=True,
        ema_momentum=opt["ema"],
        ema_overwrite_frequency=cfg["steps_per_epoch"],
    )


def build_run_head(cfg: dict[str, Any], embeddings: Any, y: np.ndarray) -> Any:
    """The config's head for this training data: output bias at the label priors, scaler from its patches.

    Parameters
    ----------
    cfg : dict
    embeddings : list of np.ndarray, each (T_i, 128), (1, 57) or (T_i, 96, 64)
    y : np.ndarray, shape (n_tracks, n_outputs)

    Returns
    -------
    keras.Model
    """
    task, name = cfg["data"]["task"], cfg["head"]["name"]
    head = {k: v for k, v in cfg["head"].items() if k != "name"}
    accepts = inspect.signature(HEADS[name]).parameters
    item: tuple[int | None, ...] = tuple(
        int(d) for d in embeddings[0].shape[1:]
    )  # (128,) VGGish, (57,) features, (96, 64) log-mel patches
    trunk = None
    if cfg["trunk"]["name"]:
        trunk, embeddings, item = _trunk(cfg, name, accepts, embeddings, item)
    if "patch_shape" in accepts:
        if len(item) != 2:
            raise DataError(
                f"head {name!r} takes log-mel patches (a `--frontend melspec` cache); this cache holds"
                f" rows of {item[0]} values"
            )
        head.setdefault("patch_shape", item)
    elif len(item) != 1:
        raise DataError(
            f"head {name!r} takes embedding rows; this cache holds log-mel patches {item}: use a CNN head"
            f" ({', '.join(PATCH_HEADS)})"
        )
    else:
        head.setdefault("embedding_size", item[0])
    if "standardize" in accepts:  # the scaler from the training patches (mlp: on by default)
        if head.get("standardize", accepts["standardize"].default):
            head["input_stats"] = input_stats(embeddings)
    # start at the label priors rather than at 0.5 for every tag
    model = build_head(name, y.shape[1], task, output_bias=prior_bias(y, task), **head)
    if trunk is None:
        return model
    from .finetune import trunk_model

    return trunk_model(model, trunk)


def _trunk(
    cfg: dict[str, Any], name: str, accepts: Any, patches: Any, item: Any, stats_patches: int = 4096
) -> tuple[Any, Any, tuple[int | None, ...]]:
    """The VGGish trunk of a fine-tuning config, and what the head on top sees: embedding rows.

    Returns the trunk, the embeddings of (up to ``stats_patches``) training
    patches through it (for a head's input scaler) and the head's item shape.
    """
    from .finetune import load_trunk

    model = registry.model(cfg["trunk"]["name"])
    if item != tuple(model.input_shape or ()):
        raise DataError(
            f"config key trunk.name={model.name!r} fine-tunes {model.name} on its own inputs of shape"
            f" {model.input_shape} (log-mel patches: a `--frontend melspec` cache); this cache holds items of shape"
            f" {item}"
        )
    if "patch_shape" in accepts:
        raise ParameterError(
            f"head {name!r} takes patches itself: a trunk goes under an embedding head"
            " (dense, autopool, attention, mlp)"
        )
    dtype = "float16" if backend.gpus() else "float32"  # mixed precision on a GPU (float32 weights: they train)
    trunk = load_trunk(model=model.name, weights=cfg["trunk"]["weights"], train=cfg["trunk"]["train"], dtype=dtype)
    rows, n = [], 0
    standardize = cfg["head"].get("standardize", accepts["standardize"].default if "standardize" in accepts else False)
    for p in patches if standardize else ():  # the head's scaler sees what the trunk makes now
        if n >= stats_patches:
            break
        rows.append(np.asarray(trunk.predict(np.asarray(p[: stats_patches - n], np.float32), verbose=0), np.float32))
        n += len(rows[-1])
    return trunk, rows, tuple(model.kinds[0].row_shape)


def _reseed(model: Any, seed: int) -> None:
    """Set every random generator inside the model (dropout masks) from ``seed``.

    Called at each epoch start so an epoch's randomness depends on (seed,
    epoch) alone, not on how many steps ran before in this process: a run
    resumed from any checkpoint repeats the uninterrupted run exactly.
    """
    import keras

    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator):
                value.state.assign(np.array([rng.integers(1, 2**31), 0], dtype=value.state.dtype))


def fit(
    cfg: dict[str, Any],
    run_dir: str,
    *,
    train_data: Any = None,
    valid_data: Any = None,
    schedule: Any = None,
    verbose: int = 1,
    on_epoch: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Train ``cfg``'s head into ``run_dir`` (resuming when it holds a checkpoint).

    The data are loaded and checked first; then the run folder is made and
    locked (one writer per run folder) for the training.

    Parameters
    ----------
    cfg : dict
        A validated config (:func:`tagger.training.config.validate`).
    run_dir : str
    train_data, valid_data : tuple, optional
        ``(ids, embeddings, y)`` overriding the config's splits (cross-validation).
    schedule : sequence of float, optional
        A refit: train exactly ``len(schedule)`` epochs, epoch ``i`` at learning
        rate ``schedule[i]`` (see :func:`tagger.training.runs.read_schedule`), with no early stopping
        or learning-rate reduction, and keep the last epoch's model.
        ``valid_data`` is then only scored, never used to choose anything.
        An ensemble config (:mod:`.ensemble`) takes ``{"members": {name: schedule}}``.
    verbose : int
    on_epoch : callable, optional
        ``on_epoch(epoch, val_score)`` after every epoch (checkpoint written):
        a hyper-parameter search reports there, and may stop the run by
        raising (``optuna.TrialPruned``); a rerun resumes after that epoch.

    Returns
    -------
    dict
        The validation metrics written to ``metrics.json``.
    """
    data = cfg["data"]
    labels = read_vocabulary(data_path(cfg, "vocabulary"))
    dataset = None
    if train_data is None or valid_data is None:
        dataset = Dataset(cfg)
        train_data = train_data or dataset.split(data["train_split"], augmented=True)
        valid_data = valid_data or dataset.split(data["valid_split"])
    for name, part in (("train", train_data), ("valid", valid_data)):
        if not part.ids and dataset is None:  # given by the caller (a fold of cross-validation)
            raise DataError(f"{data_path(cfg, 'index')}: the {name} data hold no tracks with labels in the vocabulary")
        if not part.ids and dataset is not None:
            key = f"{name}_split"
            raise DataError(
                f"{data_path(cfg, 'index')}: config key data.{key}={data[key]!r} selects no tracks with labels in the"
                f" vocabulary; the index's splits: {', '.join(map(str, dataset.split_names()))}"
            )
    check_same_provenance({"train": train_data.embeddings, "valid": valid_data.embeddings}, data_path(cfg, "cache"))
    if cfg["head"]["name"] == ENSEMBLE:  # members trained one by one on these data, then averaged
        return ensemble.fit(
            cfg, run_dir, labels, train_data, valid_data, fit_member=fit, schedule=schedule, verbose=verbose
        )
    if schedule is not None:
        schedule = [float(lr) for lr in schedule]
        if not schedule or min(schedule) <= 0:
            raise ParameterError(f"schedule={schedule}: a refit needs at least one epoch and positive learning rates")
    os.makedirs(run_dir, exist_ok=True)
    with locks.exclusive(locks.folder_lock_path(run_dir), what=f"run folder {run_dir}"):
        return _fit(cfg, run_dir, labels, train_data, valid_data, schedule, verbose, on_epoch)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's stream, mixup and dropout masks: from (seed, epoch) alone, so a resumed run repeats."""
    return int(seed) * 100_003 + int(epoch)


def _fit(
    cfg: dict[str, Any],
    run_dir: str,
    labels: list[str],
    train_data: Any,
    valid_data: Any,
    schedule: list[float] | None,
    verbose: int,
    on_epoch: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    runs.init_run(run_dir, cfg, labels, schedule)
    model, state, batch_size = _start(cfg, run_dir, train_data)
    board = runs.Scalars(run_dir, backend=backend.name())
    try:
        n_epochs = cfg["epochs"] if schedule is None else len(schedule)
        while state["epoch"] < n_epochs and not state["stopped"]:
            epoch = state["epoch"]
            row = _train_epoch(cfg, model, train_data, valid_data, epoch, batch_size, schedule)
            board.add(epoch, **{key: row[key] for key in ("loss", "val_score", "lr")})
            improved = _update_state(cfg, run_dir, model, state, row, refit=schedule is not None)
            runs.append_history(os.path.join(run_dir, "history.csv"), row, epoch)
            runs.save_checkpoint(os.path.join(run_dir, "checkpoints"), model, state)
            if on_epoch is not None:
                on_epoch(epoch, row["val_score"])
            if verbose:
                monitor = "pr_auc" if cfg["data"]["task"] == "multilabel" else "accuracy"
                print(
                    f"epoch {epoch + 1}/{n_epochs}: loss {row['loss']:.4f}, val {monitor} {row['val_score']:.4f},"
                    f" lr {row['lr']:.2g}, {row['seconds']:.1f}s{' *' if improved else ''}",
                    flush=True,
                )
    finally:
        board.close()
    return _finish(cfg, run_dir, labels, state, train_data, valid_data, refit=schedule is not None)


def _provenance_of(cfg: dict[str, Any], track_id: str) -> Any:
    """The provenance of one training entry (data given as plain lists, without a recorded provenance)."""
    return cache.dataset_provenance(cache.CacheView(data_path(cfg, "cache")).load([track_id]))


def _start(cfg: dict[str, Any], run_dir: str, train_data: Any) -> tuple[Any, dict[str, Any], int]:
    """The model and loop state: from the newest checkpoint, else a fresh head; and the global batch size."""
    import keras

    # the run folder says which embeddings its head expects and what made them: what the cache entries record
    trained_on = getattr(train_data.embeddings, "provenance", None) or _provenance_of(cfg, train_data.ids[0])
    # which patches a patch head takes (registry.Kind.head_frontend); other kinds record their model's default
    frontend = trained_on["frontend"] if registry.kind(trained_on["kind"]).head_frontend else None
    write_meta(
        run_dir,
        embedding=trained_on["kind"],
        task=cfg["data"]["task"],
        window=cfg["window"],
        frontend=frontend,
        provenance=trained_on,
    )
    backend.deterministic()
    keras.utils.set_random_seed(int(cfg["seed"]))
    scope, replicas = backend.data_parallel()  # every visible GPU: MirroredStrategy (TF), DataParallel (JAX)
    with scope:
        resumed = runs.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
        if resumed is not None:
            model, state = resumed
            log.info("resuming %s at epoch %d", run_dir, state["epoch"])
        else:
            state = {"epoch": 0, "best": -np.inf, "best_epoch": -1, "wait": 0, "lr_wait": 0, "stopped": False}
            model = build_run_head(cfg, train_data.embeddings, train_data.y)
            model.compile(optimizer=_optimizer(cfg), loss=loss_for(cfg["data"]["task"]))
    return model, state, cfg["batch_size"] * replicas


def _train_epoch(
    cfg: dict[str, Any],
    model: Any,
    train_data: Any,
    valid_data: Any,
    epoch: int,
    batch_size: int,
    schedule: list[float] | None,
) -> dict[str, Any]:
    """One epoch on its own (seed, epoch) stream, then the validation score; the history row."""
    import keras

    from .metrics import monitor_score
    from .streams import keras_batches, mixup, training_stream

    if schedule is not None:
        model.optimizer.learning_rate.assign(schedule[epoch])
    seed = epoch_seed(cfg["seed"], epoch)
    keras.utils.set_random_seed(seed)
    _reseed(model, seed)
    mux = cfg["mux"]
    stream = training_stream(
        train_data.embeddings,
        train_data.y,
        window=cfg["window"],
        batch_size=batch_size,
        n_active=mux["n_active"],
        rate=mux["rate"],
        seed=seed,
        weighting=mux["weighting"],
        draw=mux["draw"],
    )
    started = time.perf_counter()
    done = model.fit(
        keras_batches(mixup(stream, cfg["mixup"], seed=seed)),
        steps_per_epoch=cfg["steps_per_epoch"],
        epochs=1,
        verbose=0,
        shuffle=False,
    )
    seconds = time.perf_counter() - started
    score = monitor_score(cfg["data"]["task"], valid_data.y, predict_tracks(model, valid_data.embeddings))
    return {
        "epoch": epoch,
        "loss": float(done.history["loss"][-1]),
        "val_score": score,
        "lr": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
        "seconds": round(seconds, 3),
    }


def _update_state(
    cfg: dict[str, Any], run_dir: str, model: Any, state: dict[str, Any], row: dict[str, Any], *, refit: bool
) -> bool:
    """Keep the best model; early stopping and learning-rate reduction (a refit keeps its last epoch)."""
    es, rl = cfg["early_stopping"], cfg["reduce_lr"]
    # a refit keeps its last epoch: the validation data chooses nothing there
    improved = refit or row["val_score"] > state["best"] + 1e-6
    if improved:
        state.update(best=row["val_score"], best_epoch=row["epoch"], wait=0, lr_wait=0)
        runs.save_model(model, os.path.join(run_dir, "model.keras"))
    else:
        state["wait"] += 1
        state["lr_wait"] += 1
        lr = row["lr"]
        if state["lr_wait"] >= rl["patience"] and lr > rl["min_lr"]:
            model.optimizer.learning_rate.assign(max(lr * rl["factor"], rl["min_lr"]))
            state["lr_wait"] = 0
        if state["wait"] >= es["patience"]:
            state["stopped"] = True
    state["epoch"] = row["epoch"] + 1
    return improved


def _finish(
    cfg: dict[str, Any],
    run_dir: str,
    labels: list[str],
    state: dict[str, Any],
    train_data: Any,
    valid_data: Any,
    *,
    refit: bool,
) -> dict[str, Any]:
    """Thresholds (multi-label: chosen on validation) and ``metrics.json`` of the kept model."""
    from .metrics import monitor_score

    task = cfg["data"]["task"]
    valid_y = valid_data.y
    valid_score = predict_tracks(load_head(run_dir, compile=False), valid_data.embeddings)
    runs.write_thresholds(run_dir, labels, task, valid_y, valid_score)
    metrics = {
        "valid_score": float(monitor_score(task, valid_y, valid_score)),
        "monitor": "macro_pr_auc" if task == "multilabel" else "accuracy",
        "best_epoch": int(state["best_epoch"]),
        "epochs_run": int(state["epoch"]),
        "n_train": len(train_data.embeddings),
        "n_valid": len(valid_data.embeddings),
        "selection": "refit: last epoch of a fixed schedule" if refit else "best validation epoch",
    }
    write_json_atomic(metrics, os.path.join(run_dir, "metrics.json"))
    return metrics


def refit_fold(
    cfg: dict[str, Any], run_dir: str, k: int, schedule: Any, *, verbose: int = 1, dataset: Any = None
) -> dict[str, Any]:
    """Refit on every fold but k with a fixed schedule and score on fold k, which chose nothing; its metrics."""
    dataset = dataset or Dataset(cfg)
    train_data, valid_data = dataset.without_folds(k, augmented=True), dataset.fold(k)
    return fit(cfg, run_dir, train_data=train_data, valid_data=valid_data, schedule=schedule, verbose=verbose)


def cross_validate(cfg: dict[str, Any], run_dir: str, *, verbose: int = 1) -> dict[str, Any]:
    """Nested cross-validation over the index's ``fold`` column; summary in ``run_dir/metrics.json``.

    For each held-out fold k (:meth:`Dataset.nested_folds`), a head trained on the
    other folds but the selection fold j, with early stopping and learning-rate
    reduction watching j, fixes the schedule (``fold{k}-select/``); the head is
    then retrained on every fold but k with that schedule (``fold{k}/``) and
    scored on fold k, which chose nothing.
    """
    dataset = Dataset(cfg)  # the index and vocabulary, read once for every fold
    pairs = dataset.nested_folds()
    scores, epochs = [], []
    for k, j in pairs:
        select = os.path.join(run_dir, f"fold{k}-select")
        train_data, valid_data = dataset.selection(k, j)
        fit(cfg, select, train_data=train_data, valid_data=valid_data, verbose=verbose)
        schedule = runs.read_schedule(select)
        metrics = refit_fold(cfg, os.path.join(run_dir, f"fold{k}"), k, schedule, verbose=verbose, dataset=dataset)
        scores.append(metrics["valid_score"])
        epochs.append(runs.schedule_epochs(schedule))
    summary = {
        "cv_folds": len(pairs),
        "fold_scores": scores,
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "monitor": metrics["monitor"],
        "fold_epochs": epochs,
        "protocol": "nested: epochs and learning rates chosen on another fold, then refit on all folds but the held-out one",
    }
    write_json_atomic(summary, os.path.join(run_dir, "metrics.json"))
    return summary


def train(cfg: dict[str, Any] | str, run_dir: str, *, verbose: int = 1) -> dict[str, Any]:
    """Train per the config: cross-validation when ``data.cv_folds > 1``, else one run.

    The config is validated first, so a bad value fails before the run folder exists.
    """
    config = validate(cfg)
    if int(config["data"]["cv_folds"]) > 1:
        Dataset(config).nested_folds()  # a bad fold setting fails before the run folder exists
        os.makedirs(run_dir, exist_ok=True)
        with locks.exclusive(locks.folder_lock_path(run_dir), what=f"run folder {run_dir}"):
            return cross_validate(config, run_dir, verbose=verbose)
    return fit(config, run_dir, verbose=verbose)
