"""Evaluating a run folder on a split: clip scores, per-tag metrics, plots.

Writes ``<run>/eval/<split>-<mode>/``: ``metrics.json``, ``per_tag.csv`` and
PNG plots (per-tag PR-AUC bars for tagging, a confusion matrix for genres).
"""

import json
import os

import numpy as np

from .exceptions import DataError, ParameterError

__all__ = ["MODES", "load_run", "clip_scores", "evaluate"]

MODES = ("head", "soft", "hard")


def load_run(run_dir):
    """Load a run folder's best model, config, labels and thresholds."""
    import keras

    from . import layers  # noqa: F401 - registers the custom layers for loading
    from .bundle import read_labels

    needed = ("model.keras", "config.json", "labels.json")
    missing = [n for n in needed if not os.path.exists(os.path.join(run_dir, n))]
    if missing:
        raise DataError(f"{run_dir}: not a finished run folder (missing {', '.join(missing)})")
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    labels, thresholds = read_labels(run_dir)
    return keras.saving.load_model(os.path.join(run_dir, "model.keras")), cfg, labels, thresholds


def clip_scores(model, embeddings, *, mode="head", window=10, thresholds=None, task="multilabel"):
    """Clip-level scores.

    Parameters
    ----------
    model : keras.Model
        A head.
    embeddings : list of np.ndarray, each (T_i, 128)
    mode : {'head', 'soft', 'hard'}
        ``head``: the whole clip through the head (its own pooling).
        ``soft``: mean of the head's outputs over non-overlapping windows of
        ``window`` patches. ``hard``: share of windows voting for each tag
        (over threshold) or class (argmax).
    thresholds : np.ndarray, optional
        Per-tag thresholds for hard voting on multi-label tasks.

    Returns
    -------
    np.ndarray, shape (n_clips, n_outputs)
    """
    from .train import predict_tracks

    if mode not in MODES:
        raise ParameterError(f"mode={mode!r} must be one of {MODES}")
    if mode == "head":
        return predict_tracks(model, embeddings)
    pieces, owner = [], []
    for i, emb in enumerate(embeddings):
        for start in range(0, len(emb), window):
            pieces.append(emb[start : start + window])
            owner.append(i)
    owner = np.array(owner)
    scores = predict_tracks(model, pieces)
    if mode == "hard":
        if task == "multilabel":
            scores = (scores >= (0.5 if thresholds is None else thresholds)[None, :]).astype(np.float32)
        else:
            scores = np.eye(scores.shape[1], dtype=np.float32)[np.argmax(scores, 1)]
    out = np.zeros((len(embeddings), scores.shape[1]), np.float32)
    np.add.at(out, owner, scores)
    return out / np.bincount(owner, minlength=len(embeddings))[:, None]


def evaluate(run_dir, *, split="test", mode="head", out_dir=None, plots=True):
    """Evaluate a run on one split of its dataset.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    from .locks import exclusive, folder_lock_path

    model, cfg, labels, thresholds = load_run(run_dir)
    with exclusive(folder_lock_path(run_dir), what=f"run folder {run_dir}"):
        return _evaluate(run_dir, model, cfg, labels, thresholds, split=split, mode=mode, out_dir=out_dir, plots=plots)


def _evaluate(run_dir, model, cfg, labels, thresholds, *, split, mode, out_dir, plots):
    import pandas as pd

    from .metrics import multilabel_report, singlelabel_report
    from .records import write_json_atomic
    from .train import load_split

    task = cfg["data"]["task"]
    ids, embeddings, y = load_split(cfg, split)
    if not ids:
        raise DataError(f"{cfg['data']['index']}: split {split!r} has no tracks with labels in the vocabulary")
    scores = clip_scores(model, embeddings, mode=mode, window=cfg["window"], thresholds=thresholds, task=task)
    if task == "multilabel":
        summary, rows = multilabel_report(y, scores, thresholds, labels)
    else:
        summary, rows = singlelabel_report(y, scores, labels)
    summary.update(split=split, mode=mode, run=os.path.abspath(run_dir))
    out_dir = out_dir or os.path.join(run_dir, "eval", f"{split}-{mode}")
    os.makedirs(out_dir, exist_ok=True)
    write_json_atomic(summary, os.path.join(out_dir, "metrics.json"))
    pd.DataFrame(rows).to_csv(os.path.join(out_dir, "per_tag.csv"), index=False)
    if plots:
        _plot(out_dir, task, rows, summary, labels)
    return summary


def _plot(out_dir, task, rows, summary, labels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if task == "multilabel":
        ranked = sorted((r for r in rows if not np.isnan(r["pr_auc"])), key=lambda r: -r["pr_auc"])
        fig, ax = plt.subplots(figsize=(max(6, 0.18 * len(ranked)), 4))
        ax.bar(range(len(ranked)), [r["pr_auc"] for r in ranked])
        ax.set_xticks(range(len(ranked)), [r["tag"] for r in ranked], rotation=90, fontsize=6)
        ax.set_ylabel("PR-AUC")
        ax.set_title(f"per-tag PR-AUC (macro {summary['macro_pr_auc']:.3f})")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "pr_auc.png"), dpi=120)
    else:
        cm = np.array(summary["confusion"])
        fig, ax = plt.subplots(figsize=(6, 5))
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"accuracy {summary['accuracy']:.3f}")
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "confusion.png"), dpi=120)
    plt.close(fig)
