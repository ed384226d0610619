"""Training a head on cached embeddings into a self-describing, resumable run folder.

Run folder: ``config.json`` (frozen), ``labels.json``, ``history.csv``,
``tensorboard/``, ``checkpoints/epoch-NNNN.keras`` + ``epoch-NNNN.json`` (model
with optimiser state, and the loop state; the last two epochs kept),
``model.keras`` (best on validation), ``thresholds.json``, ``metrics.json``,
``version.json`` (and ``schedule.json`` for a refit on a fixed learning-rate
schedule, see :func:`fit`). Cross-validation is nested (:func:`cross_validate`):
the fold a head is scored on never chooses its epochs. A killed run restarted
on the same folder resumes from its last checkpoint and ends as an
uninterrupted run would: each epoch's data stream and random state derive
from (seed, epoch) alone, and the early stopping and learning-rate schedule
state is checkpointed with the model.
"""

import csv
import inspect
import json
import logging
import os
import time

import numpy as np

from . import __version__, cache, locks, params, tracks
from .bundle import write_meta
from .exceptions import DataError, ParameterError
from .records import write_json_atomic

__all__ = [
    "load_split",
    "build_run_head",
    "fit",
    "nested_folds",
    "read_schedule",
    "cross_validate",
    "selection_data",
    "refit_fold",
    "train",
    "predict_tracks",
]

log = logging.getLogger(__name__)


def _json_dump(obj, path):
    write_json_atomic(obj, path)


def load_split(cfg, split, *, fold=None, exclude_fold=None, augmented=False):
    """Embeddings and label matrix of one split (or fold) of the config's dataset.

    Parameters
    ----------
    cfg : dict
    split : str or None
        Value of the index's ``split`` column; ignored when a fold is given.
    fold : int, optional
        Only the tracks of this fold (index column ``fold``).
    exclude_fold : int or sequence of int, optional
        Every track except those of this fold (or these folds).
    augmented : bool
        Keep the augmented copies (index column ``augmented_from``): for
        training data only; a split or fold that is scored never holds them.

    Returns
    -------
    ids : list of str
    embeddings : list of np.ndarray, each (T_i, 128), float32
    y : np.ndarray, shape (n, n_labels), float32
    """
    from .config import data_path

    index_path = data_path(cfg, "index")
    df = tracks.read_index(index_path)
    if fold is not None or exclude_fold is not None:
        if "fold" not in df.columns:
            raise DataError(f"{index_path}: cross-validation needs a 'fold' column")
        if fold is not None:
            df = df[df["fold"] == fold]
        else:
            df = df[~df["fold"].isin(np.atleast_1d(exclude_fold).tolist())]
    else:
        df = df[df["split"] == split]
    if not augmented and "augmented_from" in df.columns:
        df = df[df["augmented_from"].fillna("").astype(str) == ""]
    vocabulary = tracks.read_vocabulary(data_path(cfg, "vocabulary"))
    y = tracks.label_matrix(df["labels"].tolist(), vocabulary)
    keep = y.sum(1) > 0
    ids = df["track_id"].astype(str).to_numpy()[keep].tolist()
    return ids, tracks.load_embeddings(ids, data_path(cfg, "cache")), y[keep]


def predict_tracks(model, embeddings, *, batch_size=256):
    """Clip-level predictions of a head for whole tracks (deterministic order).

    Returns
    -------
    np.ndarray, shape (n_tracks, n_outputs), float32
    """
    from .streams import iter_padded_batches

    outs = [np.asarray(model((x, m), training=False)) for x, m in iter_padded_batches(embeddings, batch_size)]
    return np.concatenate(outs)


def _optimizer(cfg):
    import keras

    opt = cfg["optimizer"]
    kinds = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }
    make = kinds[opt["name"]]
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


def build_run_head(cfg, embeddings, y):
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
    from .heads import HEADS, build_head, input_stats, prior_bias

    task, name = cfg["data"]["task"], cfg["head"]["name"]
    head = {k: v for k, v in cfg["head"].items() if k != "name"}
    accepts = inspect.signature(HEADS[name]).parameters
    item = tuple(int(d) for d in embeddings[0].shape[1:])  # (128,) VGGish, (57,) features, (96, 64) log-mel patches
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
            " (cnn4, cnn_gru, parallel_cnn, cnn_lstm)"
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


def _trunk(cfg, name, accepts, patches, item, stats_patches=4096):
    """The VGGish trunk of a fine-tuning config, and what the head on top sees: embedding rows.

    Returns the trunk, the embeddings of (up to ``stats_patches``) training
    patches through it (for a head's input scaler) and the head's item shape.
    """
    import tensorflow as tf

    from .finetune import load_trunk

    if item != (params.NUM_FRAMES, params.NUM_BANDS):
        raise DataError(
            f"config key trunk.name={cfg['trunk']['name']!r} fine-tunes VGGish on its own log-mel patches (a"
            f" `--frontend melspec` cache, {params.NUM_FRAMES} x {params.NUM_BANDS}); this cache holds items of shape {item}"
        )
    if "patch_shape" in accepts:
        raise ParameterError(
            f"head {name!r} takes patches itself: a trunk goes under an embedding head"
            " (dense, autopool, attention, mlp)"
        )
    dtype = "float16" if tf.config.list_physical_devices("GPU") else "float32"  # mixed precision on a GPU
    trunk = load_trunk(weights=cfg["trunk"]["weights"], train=cfg["trunk"]["train"], dtype=dtype)
    rows, n = [], 0
    standardize = cfg["head"].get("standardize", accepts["standardize"].default if "standardize" in accepts else False)
    for p in patches if standardize else ():  # the head's scaler sees what the trunk makes now
        if n >= stats_patches:
            break
        rows.append(np.asarray(trunk.predict(np.asarray(p[: stats_patches - n], np.float32), verbose=0), np.float32))
        n += len(rows[-1])
    return trunk, rows, (params.EMBEDDING_SIZE,)


def _strategy():
    """MirroredStrategy across GPUs when more than one is visible; else the default strategy."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


def _reseed(model, seed):
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
        if _checkpoint_epochs(os.path.join(run_dir, "checkpoints")) or os.path.exists(
            os.path.join(run_dir, "history.csv")
        ):
            raise DataError(
                f"{run_dir}: the run folder holds a different {name} and has trained with it; use a new"
                " run folder (or delete this one to start over)"
            )
        log.info("%s: no epoch finished yet; replacing its %s", run_dir, name)
    _json_dump(value, frozen)


def _init_run(run_dir, cfg, labels, schedule=None):
    os.makedirs(os.path.join(run_dir, "checkpoints"), exist_ok=True)
    _freeze(run_dir, "config.json", cfg)
    if schedule is not None:
        _freeze(run_dir, "schedule.json", schedule)
    _json_dump(labels, os.path.join(run_dir, "labels.json"))
    _json_dump({"tagger": __version__}, os.path.join(run_dir, "version.json"))


def fit(cfg, run_dir, *, train_data=None, valid_data=None, schedule=None, verbose=1, on_epoch=None):
    """Train ``cfg``'s head into ``run_dir`` (resuming when it holds a checkpoint).

    The data are loaded and checked first; then the run folder is made and
    locked (one writer per run folder) for the training.

    Parameters
    ----------
    cfg : dict
        A validated config (:func:`tagger.config.validate`).
    run_dir : str
    train_data, valid_data : tuple, optional
        ``(ids, embeddings, y)`` overriding the config's splits (cross-validation).
    schedule : sequence of float, optional
        A refit: train exactly ``len(schedule)`` epochs, epoch ``i`` at learning
        rate ``schedule[i]`` (see :func:`read_schedule`), with no early stopping
        or learning-rate reduction, and keep the last epoch's model.
        ``valid_data`` is then only scored, never used to choose anything.
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
    from .config import data_path

    data = cfg["data"]
    labels = tracks.read_vocabulary(data_path(cfg, "vocabulary"))
    train_data = train_data or load_split(cfg, data["train_split"], augmented=True)
    valid_data = valid_data or load_split(cfg, data["valid_split"])
    for name, part in (("train", train_data), ("valid", valid_data)):
        if not part[0]:
            raise DataError(f"{data_path(cfg, 'index')}: the {name} split has no tracks with labels in the vocabulary")
    if schedule is not None:
        schedule = [float(lr) for lr in schedule]
        if not schedule or min(schedule) <= 0:
            raise ParameterError(f"schedule={schedule}: a refit needs at least one epoch and positive learning rates")
    os.makedirs(run_dir, exist_ok=True)
    with locks.exclusive(locks.folder_lock_path(run_dir), what=f"run folder {run_dir}"):
        return _fit(cfg, run_dir, labels, train_data, valid_data, schedule, verbose, on_epoch)


def _fit(cfg, run_dir, labels, train_data, valid_data, schedule, verbose, on_epoch=None):
    import keras
    import tensorflow as tf

    from .heads import load_head
    from .config import data_path
    from .metrics import choose_thresholds, monitor_score
    from .streams import keras_batches, mixup, training_stream

    data = cfg["data"]
    _init_run(run_dir, cfg, labels, schedule)
    seed, task = int(cfg["seed"]), data["task"]
    # the run folder says which embeddings its head expects: what the cache entries say they hold
    first = cache.read_entry(data_path(cfg, "cache"), train_data[0][0])
    frontend = first["frontend"] if first["kind"] == "melspec" else None  # which patches a patch head takes
    write_meta(run_dir, embedding=first["kind"], task=task, window=cfg["window"], frontend=frontend)
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    strategy = _strategy()
    batch_size = cfg["batch_size"] * strategy.num_replicas_in_sync

    ckpt_dir = os.path.join(run_dir, "checkpoints")
    with strategy.scope():
        resumed = _latest_checkpoint(ckpt_dir)
        if resumed is not None:
            model, state = resumed
            log.info("resuming %s at epoch %d", run_dir, state["epoch"])
        else:
            state = {"epoch": 0, "best": -np.inf, "best_epoch": -1, "wait": 0, "lr_wait": 0, "stopped": False}
            model = build_run_head(cfg, train_data[1], train_data[2])
            loss = "binary_crossentropy" if task == "multilabel" else "categorical_crossentropy"
            model.compile(optimizer=_optimizer(cfg), loss=loss)
    history_path = os.path.join(run_dir, "history.csv")
    writer = tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard"))
    _, train_emb, train_y = train_data
    _, valid_emb, valid_y = valid_data
    es, rl = cfg["early_stopping"], cfg["reduce_lr"]
    n_epochs = cfg["epochs"] if schedule is None else len(schedule)
    while state["epoch"] < n_epochs and not state["stopped"]:
        epoch = state["epoch"]
        if schedule is not None:
            model.optimizer.learning_rate.assign(schedule[epoch])
        keras.utils.set_random_seed(seed * 100_003 + epoch)
        _reseed(model, seed * 100_003 + epoch)
        stream = training_stream(
            train_emb,
            train_y,
            window=cfg["window"],
            batch_size=batch_size,
            n_active=cfg["mux"]["n_active"],
            rate=cfg["mux"]["rate"],
            seed=seed * 100_003 + epoch,
            weighting=cfg["mux"]["weighting"],
            draw=cfg["mux"]["draw"],
        )
        stream = mixup(stream, cfg["mixup"], seed=seed * 100_003 + epoch)
        started = time.perf_counter()
        fit_hist = model.fit(
            keras_batches(stream), steps_per_epoch=cfg["steps_per_epoch"], epochs=1, verbose=0, shuffle=False
        )
        seconds = time.perf_counter() - started
        score = monitor_score(task, valid_y, predict_tracks(model, valid_emb))
        lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        row = {
            "epoch": epoch,
            "loss": float(fit_hist.history["loss"][-1]),
            "val_score": score,
            "lr": lr,
            "seconds": round(seconds, 3),
        }
        with writer.as_default():
            for key in ("loss", "val_score", "lr"):
                tf.summary.scalar(key, row[key], step=epoch)
        # a refit keeps its last epoch: the validation data chooses nothing there
        improved = schedule is not None or score > state["best"] + 1e-6
        if improved:
            state.update(best=score, best_epoch=epoch, wait=0, lr_wait=0)
            model.save(os.path.join(run_dir, "model.tmp.keras"))
            os.replace(os.path.join(run_dir, "model.tmp.keras"), os.path.join(run_dir, "model.keras"))
        else:
            state["wait"] += 1
            state["lr_wait"] += 1
            if state["lr_wait"] >= rl["patience"] and lr > rl["min_lr"]:
                model.optimizer.learning_rate.assign(max(lr * rl["factor"], rl["min_lr"]))
                state["lr_wait"] = 0
            if state["wait"] >= es["patience"]:
                state["stopped"] = True
        state["epoch"] = epoch + 1
        _append_history(history_path, row, epoch)
        _save_checkpoint(ckpt_dir, model, state)
        if on_epoch is not None:
            on_epoch(epoch, score)
        if verbose:
            print(
                f"epoch {epoch + 1}/{n_epochs}: loss {row['loss']:.4f}, val {'pr_auc' if task == 'multilabel' else 'accuracy'} {score:.4f}, lr {lr:.2g}, {seconds:.1f}s{' *' if improved else ''}",
                flush=True,
            )
    best = load_head(run_dir, compile=False)
    valid_score = predict_tracks(best, valid_emb)
    thresholds = choose_thresholds(valid_y, valid_score) if task == "multilabel" else np.full(len(labels), np.nan)
    _json_dump(
        dict(zip(labels, [None if np.isnan(t) else float(t) for t in thresholds])),
        os.path.join(run_dir, "thresholds.json"),
    )
    metrics = {
        "valid_score": float(monitor_score(task, valid_y, valid_score)),
        "monitor": "macro_pr_auc" if task == "multilabel" else "accuracy",
        "best_epoch": int(state["best_epoch"]),
        "epochs_run": int(state["epoch"]),
        "n_train": len(train_emb),
        "n_valid": len(valid_emb),
        "selection": "best validation epoch" if schedule is None else "refit: last epoch of a fixed schedule",
    }
    _json_dump(metrics, os.path.join(run_dir, "metrics.json"))
    return metrics


def _checkpoint_epochs(ckpt_dir):
    if not os.path.isdir(ckpt_dir):
        return []
    names = set(os.listdir(ckpt_dir))
    return sorted(
        int(n[6:10]) for n in names if n.startswith("epoch-") and n.endswith(".json") and n[:-5] + ".keras" in names
    )


def _save_checkpoint(ckpt_dir, model, state, keep=2):
    """Write ``epoch-NNNN.keras`` then ``epoch-NNNN.json`` (each atomically); keep the last ``keep`` pairs.

    A pair is self-contained, so a copy of the folder taken at any moment
    (a bucket sync during training) holds at least one complete pair.
    """
    stem = os.path.join(ckpt_dir, f"epoch-{state['epoch']:04d}")
    model.save(stem + ".tmp.keras")
    os.replace(stem + ".tmp.keras", stem + ".keras")
    _json_dump(state, stem + ".json")
    for old in _checkpoint_epochs(ckpt_dir)[:-keep]:
        for ext in (".json", ".keras"):
            path = os.path.join(ckpt_dir, f"epoch-{old:04d}{ext}")
            if os.path.exists(path):
                os.unlink(path)


def _latest_checkpoint(ckpt_dir):
    """(model, state) of the newest complete, loadable checkpoint pair, or None."""
    from .heads import load_head

    for epoch in reversed(_checkpoint_epochs(ckpt_dir)):
        stem = os.path.join(ckpt_dir, f"epoch-{epoch:04d}")
        try:
            with open(stem + ".json", encoding="utf-8") as f:
                state = json.load(f)
            return load_head(stem + ".keras"), state
        except Exception as exc:  # noqa: BLE001 - a damaged pair: fall back to the one before
            log.warning("checkpoint %s unusable (%s); trying an older one", stem, exc)
    return None


def _append_history(path, row, epoch):
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


def nested_folds(cfg):
    """(held-out fold, selection fold) pairs of a cross-validated config, checked before any training.

    The first ``data.cv_folds`` folds of the index's ``fold`` column are held
    out in turn; each one's selection fold is the next fold present in the
    index (cyclically), so at least three folds must be there.

    Returns
    -------
    list of (int, int)
    """
    from .config import data_path

    index_path = data_path(cfg, "index")
    df = tracks.read_index(index_path)
    n = int(cfg["data"]["cv_folds"])
    if "fold" not in df.columns:
        raise DataError(f"{index_path}: config key data.cv_folds={n} needs a 'fold' column in the index")
    present = sorted(int(f) for f in df["fold"].unique())
    if len(present) < 3:
        raise DataError(f"{index_path}: nested cross-validation needs at least 3 folds, the index has {present}")
    if n > len(present):
        raise DataError(f"config key data.cv_folds={n}: the index {index_path} has only {len(present)} folds")
    return [(present[i], present[(i + 1) % len(present)]) for i in range(n)]


def read_schedule(run_dir):
    """Learning rate of every epoch up to a finished run's best one: the refit schedule of :func:`fit`.

    Returns
    -------
    list of float
        ``best_epoch + 1`` learning rates, as logged in ``history.csv``.
    """
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        best = int(json.load(f)["best_epoch"])
    with open(os.path.join(run_dir, "history.csv"), newline="", encoding="utf-8") as f:
        lrs = {int(r["epoch"]): float(r["lr"]) for r in csv.DictReader(f)}
    if any(e not in lrs for e in range(best + 1)):
        raise DataError(f"{run_dir}: history.csv lacks epochs up to the best one ({best})")
    return [lrs[e] for e in range(best + 1)]


def selection_data(cfg, k, j):
    """Training and validation data of held-out fold k's selection run: every fold but k and j, then fold j.

    Augmented copies train (in their source's fold); fold j is scored without them.
    """
    return load_split(cfg, None, exclude_fold=(k, j), augmented=True), load_split(cfg, None, fold=j)


def refit_fold(cfg, run_dir, k, schedule, *, verbose=1):
    """Refit on every fold but k with a fixed schedule and score on fold k, which chose nothing; its metrics."""
    train_data = load_split(cfg, None, exclude_fold=k, augmented=True)
    valid_data = load_split(cfg, None, fold=k)
    return fit(cfg, run_dir, train_data=train_data, valid_data=valid_data, schedule=schedule, verbose=verbose)


def cross_validate(cfg, run_dir, *, verbose=1):
    """Nested cross-validation over the index's ``fold`` column; summary in ``run_dir/metrics.json``.

    For each held-out fold k (:func:`nested_folds`), a head trained on the
    other folds but the selection fold j, with early stopping and learning-rate
    reduction watching j, fixes the schedule (``fold{k}-select/``); the head is
    then retrained on every fold but k with that schedule (``fold{k}/``) and
    scored on fold k, which chose nothing.
    """
    pairs = nested_folds(cfg)
    scores, epochs = [], []
    for k, j in pairs:
        select = os.path.join(run_dir, f"fold{k}-select")
        train_data, valid_data = selection_data(cfg, k, j)
        fit(cfg, select, train_data=train_data, valid_data=valid_data, verbose=verbose)
        schedule = read_schedule(select)
        metrics = refit_fold(cfg, os.path.join(run_dir, f"fold{k}"), k, schedule, verbose=verbose)
        scores.append(metrics["valid_score"])
        epochs.append(len(schedule))
    summary = {
        "cv_folds": len(pairs),
        "fold_scores": scores,
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "monitor": metrics["monitor"],
        "fold_epochs": epochs,
        "protocol": "nested: epochs and learning rates chosen on another fold, then refit on all folds but the held-out one",
    }
    _json_dump(summary, os.path.join(run_dir, "metrics.json"))
    return summary


def train(cfg, run_dir, *, verbose=1):
    """Train per the config: cross-validation when ``data.cv_folds > 1``, else one run.

    The config is validated first, so a bad value fails before the run folder exists.
    """
    from .config import validate

    cfg = validate(cfg)
    if int(cfg["data"]["cv_folds"]) > 1:
        nested_folds(cfg)  # a bad fold setting fails before the run folder exists
        os.makedirs(run_dir, exist_ok=True)
        with locks.exclusive(locks.folder_lock_path(run_dir), what=f"run folder {run_dir}"):
            return cross_validate(cfg, run_dir, verbose=verbose)
    return fit(cfg, run_dir, verbose=verbose)
