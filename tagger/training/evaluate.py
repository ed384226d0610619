"""Evaluating heads: a run folder on a split of its dataset, or any model on a user's labelled clips.

:func:`evaluate` writes ``<run>/eval/<split>-<mode>/``; :func:`evaluate_truth`
scores predictions (made now by a model, or read from a ``tagger tag``
JSONL output) against a truth file (``path,labels``, ``|``-joined tags).
Both write ``metrics.json``, ``per_tag.csv`` and PNG plots (per-tag PR-AUC
bars for tagging, a confusion matrix for genres).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..exceptions import DataError, ParameterError
from ..locks import exclusive, folder_lock_path
from ..records import read_records, write_json_atomic
from ..tables import read_table
from .bundle import check_finished, load_head, read_labels
from .dataset import SEPARATOR, Dataset
from .heads import predict_tracks

__all__ = [
    "MODES",
    "default_split",
    "is_cv_run",
    "check_run",
    "load_run",
    "clip_scores",
    "evaluate",
    "read_truth",
    "read_mapping",
    "evaluate_truth",
    "predictions_from_jsonl",
]

MODES = ("head", "soft", "hard")


def check_run(run_dir: str) -> None:
    """Refuse what is not a finished run folder (no such folder, or its head, config or labels missing)."""
    if not os.path.isdir(run_dir):
        raise DataError(f"{run_dir}: no such run folder")
    needed = ("model.keras", "config.json", "labels.json")
    missing = [n for n in needed if not os.path.exists(os.path.join(run_dir, n))]
    if missing:
        raise DataError(f"{run_dir}: not a finished run folder (missing {', '.join(missing)})")
    check_finished(run_dir)


def load_run(run_dir: str) -> tuple[Any, dict[str, Any], list[str], np.ndarray]:
    """Load a run folder's best model, config, labels and thresholds."""
    check_run(run_dir)
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    labels, thresholds = read_labels(run_dir)
    return load_head(run_dir, compile=False), cfg, labels, thresholds


def clip_scores(
    model: Any,
    embeddings: list[np.ndarray],
    *,
    mode: str = "head",
    window: int = 10,
    thresholds: np.ndarray | None = None,
    task: str = "multilabel",
) -> np.ndarray:
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
    if mode not in MODES:
        raise ParameterError(f"mode={mode!r} must be one of {MODES}")
    if mode == "head":
        return predict_tracks(model, embeddings)
    pieces, owners = [], []
    for i, emb in enumerate(embeddings):
        for start in range(0, len(emb), window):
            pieces.append(emb[start : start + window])
            owners.append(i)
    owner = np.array(owners)
    scores = predict_tracks(model, pieces)
    if mode == "hard":
        if task == "multilabel":
            cut = np.full(scores.shape[1], 0.5) if thresholds is None else np.asarray(thresholds)
            scores = (scores >= cut[None, :]).astype(np.float32)
        else:
            scores = np.eye(scores.shape[1], dtype=np.float32)[np.argmax(scores, 1)]
    out = np.zeros((len(embeddings), scores.shape[1]), np.float32)
    np.add.at(out, owner, scores)
    return out / np.bincount(owner, minlength=len(embeddings))[:, None]


def default_split(dataset: Any) -> str:
    """The split ``tagger evaluate RUN`` scores when none is named: ``test`` where the index has one, else ``valid``.

    ``dataset``: the run's :class:`tagger.training.dataset.Dataset`.
    """
    cfg = dataset.cfg
    splits = set(dataset.index.get("split", []))
    for name in ("test", "valid"):
        if name in splits:
            return name
    raise DataError(
        f"{cfg['data']['index']}: no 'test' or 'valid' split to evaluate on (splits: {sorted(map(str, splits))});"
        " name one with --split"
    )


def is_cv_run(run_dir: str) -> bool:
    """Whether ``run_dir`` is a cross-validated run: a ``metrics.json`` with ``cv_folds`` and a head per fold, none on top."""
    path = os.path.join(run_dir, "metrics.json")
    if os.path.exists(os.path.join(run_dir, "model.keras")) or not os.path.exists(path):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            return "cv_folds" in json.load(f)
    except (OSError, ValueError):
        return False


def evaluate(
    run_dir: str, *, split: str | None = None, mode: str = "head", out_dir: str | None = None, plots: bool = True
) -> dict[str, Any]:
    """Evaluate a run on one split of its dataset, or a cross-validated run on its held-out folds.

    Parameters
    ----------
    run_dir : str
        A run folder of ``tagger train``.
    split : str, optional
        Value of the index's ``split`` column; default :func:`default_split`. A
        cross-validated run scores each fold's head on the fold it was not
        trained on (``split`` must then be None or ``'folds'``); one fold's
        folder (``RUN/fold<k>``) is scored on fold k alone (``split`` None or
        ``'fold<k>'``; any other split it mostly trained on is refused).
    mode : {'head', 'soft', 'hard'}
    out_dir : str, optional
        Default ``run_dir/eval/<split>-<mode>`` (``folds-<mode>`` for a cross-validated run).

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    if is_cv_run(run_dir):
        if split not in (None, "folds"):
            raise ParameterError(
                f"{run_dir} is cross-validated: it is scored on its held-out folds (--split folds), not {split!r}"
            )
        with exclusive(folder_lock_path(run_dir), what=f"run folder {run_dir}"):
            return _evaluate_folds(run_dir, mode=mode, out_dir=out_dir, plots=plots)
    fold = fold_of(run_dir)
    if fold is not None and split not in (None, f"fold{fold}"):
        parent = os.path.dirname(os.path.normpath(run_dir))
        raise ParameterError(
            f"{run_dir} is fold {fold} of the cross-validated run {parent}: it trained on the other folds, most of"
            f" split {split!r}; it is scored on its held-out fold (tagger evaluate {run_dir}), the whole run on"
            f" every fold (tagger evaluate {parent})"
        )
    model, cfg, labels, thresholds = load_run(run_dir)
    dataset = Dataset(cfg)  # the index and vocabulary, read once for the default split and the scoring
    if fold is None:
        split = default_split(dataset) if split is None else split
    else:  # one fold of a cross-validated run: the clips it held out, never ones it trained on
        split = f"fold{fold}"
    with exclusive(folder_lock_path(run_dir), what=f"run folder {run_dir}"):
        return _evaluate(
            run_dir, model, dataset, labels, thresholds, split=split, mode=mode, out_dir=out_dir, plots=plots, fold=fold
        )


def fold_of(run_dir: str) -> int | None:
    """k where ``run_dir`` is ``fold<k>/`` of a cross-validated run (its parent), else None."""
    name = os.path.basename(os.path.normpath(run_dir))
    if name.startswith("fold") and name[4:].isdigit() and is_cv_run(os.path.dirname(os.path.abspath(run_dir))):
        return int(name[4:])
    return None


def _evaluate(
    run_dir: str,
    model: Any,
    dataset: Any,
    labels: list[str],
    thresholds: np.ndarray,
    *,
    split: str,
    mode: str,
    out_dir: str | None,
    plots: bool,
    fold: int | None = None,
) -> dict[str, Any]:
    """Score a head on a split of its index, or (``fold`` k) on fold k alone, the clips a fold's head held out."""
    cfg = dataset.cfg
    task = cfg["data"]["task"]
    ids, embeddings, y = dataset.split(split) if fold is None else dataset.fold(fold)
    if not ids:
        what = f"split {split!r}" if fold is None else f"fold {fold}"
        raise DataError(f"{cfg['data']['index']}: {what} has no tracks with labels in the vocabulary")
    scores = clip_scores(model, embeddings, mode=mode, window=cfg["window"], thresholds=thresholds, task=task)
    extra = None if fold is None else {"fold": fold, "protocol": "the fold's held-out clips (out-of-fold)"}
    return _report(
        run_dir, task, y, scores, thresholds, labels, split=split, mode=mode, out_dir=out_dir, plots=plots, extra=extra
    )


def _report(
    run_dir: str,
    task: str,
    y: np.ndarray,
    scores: np.ndarray,
    thresholds: np.ndarray,
    labels: list[str],
    *,
    split: str,
    mode: str,
    out_dir: str | None,
    plots: bool,
    y_pred: np.ndarray | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    import pandas as pd

    from .metrics import multilabel_report, singlelabel_report

    if task == "multilabel":
        summary, rows = multilabel_report(y, scores, thresholds, labels, y_pred=y_pred)
    else:
        summary, rows = singlelabel_report(y, scores, labels)
    summary.update(split=split, mode=mode, run=os.path.abspath(run_dir), **(extra or {}))
    out_dir = out_dir or os.path.join(run_dir, "eval", f"{split}-{mode}")
    os.makedirs(out_dir, exist_ok=True)
    write_json_atomic(summary, os.path.join(out_dir, "metrics.json"))
    pd.DataFrame(rows).to_csv(os.path.join(out_dir, "per_tag.csv"), index=False)
    if plots:
        _plot(out_dir, task, rows, summary, labels)
    return summary


def _evaluate_folds(run_dir: str, *, mode: str, out_dir: str | None, plots: bool) -> dict[str, Any]:
    """Each ``fold{k}/`` head on fold k, which it was not trained on and which chose nothing; pooled."""
    found = sorted(n for n in os.listdir(run_dir) if n.startswith("fold") and n[4:].isdigit())
    if not found or not os.path.exists(os.path.join(run_dir, found[0], "config.json")):
        raise DataError(f"{run_dir}: not a finished cross-validated run (no fold<k>/config.json)")
    with open(os.path.join(run_dir, found[0], "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)  # every fold's head was trained from the same config
    task = cfg["data"]["task"]
    dataset = Dataset(cfg)
    folds = [k for k, _ in dataset.nested_folds()]  # the held-out folds, as training chose them
    missing = [f"fold{k}" for k in folds if not os.path.exists(os.path.join(run_dir, f"fold{k}", "model.keras"))]
    if missing:
        raise DataError(f"{run_dir}: not a finished cross-validated run (missing {', '.join(missing)})")
    ys, all_scores, preds, used = [], [], [], []
    labels: list[str] = []
    for k in folds:
        model, _, labels, thresholds = load_run(os.path.join(run_dir, f"fold{k}"))
        ids, embeddings, y = dataset.fold(k)
        if not ids:
            continue
        scores = clip_scores(model, embeddings, mode=mode, window=cfg["window"], thresholds=thresholds, task=task)
        ys.append(y)
        all_scores.append(scores)
        preds.append((scores >= thresholds[None, :]).astype(int))
        used.append(thresholds)
    if not ys:
        raise DataError(f"{cfg['data']['index']}: the folds hold no tracks with labels in the vocabulary")
    return _report(
        run_dir,
        task,
        np.concatenate(ys),
        np.concatenate(all_scores),
        np.mean(used, axis=0),  # shown per tag; each fold's clips are decided by that fold's own thresholds
        labels,
        split="folds",
        mode=mode,
        out_dir=out_dir,
        plots=plots,
        y_pred=np.concatenate(preds) if task == "multilabel" else None,
        extra={"folds": folds, "protocol": "each fold scored by the head trained without it (out-of-fold)"},
    )


def _key(path: str) -> str:
    return os.path.normpath(os.fspath(path))


def read_truth(path: str) -> dict[str, list[str]]:
    """A truth file: ``path,labels`` (``|``-joined tags; single- or multi-label).

    Returns
    -------
    dict
        normalised path -> list of tag names, in file order.
    """

    df = read_table(path, what="truth file", dtype=str, keep_default_na=False)
    missing = [c for c in ("path", "labels") if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: a truth file has the columns path,labels; {missing} missing (found {list(df.columns)})"
        )
    truth = {}
    for row in df.itertuples():
        key = _key(row.path)
        if key in truth:
            raise DataError(f"{path}: clip {row.path!r} is listed twice")
        truth[key] = [t.strip() for t in row.labels.split(SEPARATOR) if t.strip()]
    return truth


def read_mapping(path: str) -> dict[str, str]:
    """A tag mapping: CSV ``truth,model`` (or a JSON object): ground-truth tag -> model tag."""

    if not os.path.exists(path):
        raise DataError(f"{path}: no such mapping file")
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            mapping = json.load(f)
        if not isinstance(mapping, dict):
            raise DataError(f"{path}: a JSON mapping is an object {{truth tag: model tag}}")
        return {str(k): str(v) for k, v in mapping.items()}
    df = read_table(path, what="mapping file", dtype=str, keep_default_na=False)
    if [str(c).strip() for c in df.columns] != ["truth", "model"]:
        raise DataError(
            f"{path}: a mapping CSV begins with the header line truth,model, then one truth tag,model tag pair a line;"
            f" its first line is {','.join(map(str, df.columns))!r} (read as a header, that mapping would be lost)"
        )
    return dict(zip(df.iloc[:, 0].str.strip(), df.iloc[:, 1].str.strip()))


def predictions_from_jsonl(path: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray, str | None]:
    """Clip probabilities and chosen tags of a ``tagger tag`` JSONL output.

    Returns
    -------
    paths : list of str
    labels : list of str
    scores : np.ndarray, shape (n_clips, n_labels)
    chosen : np.ndarray, shape (n_clips, n_labels), int: the tags the output chose
    task : str or None
        From the output's ``.meta.json`` when it records it.
    """
    if not os.path.exists(path):
        raise DataError(f"{path}: no such predictions file")
    with open(path, "rb") as f:
        start = f.read(1)
    if start and start != b"{":  # a CSV tag output, or anything else: not a damaged JSONL
        raise DataError(
            f"{path}: not a JSONL output of tagger tag (one JSON object per line, with every tag's probability; a CSV"
            " output holds only the top tags): tag again with --out NAME.jsonl, or score the model itself"
            " (tagger evaluate --model MODEL --truth ... CLIPS)"
        )
    _, rows = read_records(path, "jsonl", truncate=False)
    if not rows:
        raise DataError(f"{path}: no predictions (a JSONL output of tagger tag is needed)")
    labels = list(rows[0]["probabilities"])
    paths, scores, chosen = [], [], []
    for row in rows:
        if list(row["probabilities"]) != labels:
            raise DataError(f"{path}: {row['path']} has other tags than the first record")
        paths.append(row["path"])
        scores.append([row["probabilities"][t] for t in labels])
        chosen.append([int(t in row.get("tags", ())) for t in labels])
    task = None
    meta = path + ".meta.json"
    if os.path.exists(meta):
        with open(meta, encoding="utf-8") as f:
            task = json.load(f).get("settings", {}).get("model", {}).get("task")
    return paths, labels, np.asarray(scores, np.float32), np.asarray(chosen, int), task


def evaluate_truth(
    paths: list[str],
    scores: np.ndarray,
    labels: list[str],
    truth_file: str,
    *,
    task: str = "multilabel",
    thresholds: np.ndarray | None = None,
    chosen: np.ndarray | None = None,
    mapping_file: str | None = None,
    out_dir: str | None = None,
    plots: bool = True,
    source: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Score predictions against a truth file.

    Parameters
    ----------
    paths : list of str
        The predicted clips, as tagged.
    scores : np.ndarray, shape (n_clips, n_labels)
        Clip probabilities in ``labels`` order.
    labels : list of str
        The model's vocabulary.
    truth_file : str
        ``path,labels`` CSV (:func:`read_truth`).
    task : {'multilabel', 'singlelabel'}
    thresholds : np.ndarray, optional
        Per-tag thresholds (multi-label; default 0.5), unless ``chosen`` gives the hard predictions.
    chosen : np.ndarray, optional
        (n_clips, n_labels) 0/1 tags chosen by the output.
    mapping_file : str, optional
        Truth tag -> model tag (:func:`read_mapping`); truth tags outside the
        model's vocabulary after mapping are reported, never silently dropped.
    out_dir : str, optional
        Default: the truth file's name with ``-eval``.
    source : str, optional
        What made the predictions (recorded).

    Returns
    -------
    dict
        The metrics written to ``metrics.json``, with ``n_clips``, the clips
        missing on either side and the tags that could not be scored.
    """
    import pandas as pd

    from .metrics import multilabel_report, singlelabel_report

    truth = read_truth(truth_file)
    mapping = read_mapping(mapping_file) if mapping_file else {}
    position = {t: i for i, t in enumerate(labels)}
    predicted: dict[str, int] = {}
    for i, path in enumerate(paths):
        predicted.setdefault(_key(path), i)
        predicted.setdefault(os.path.abspath(path), i)
    unknown: dict[str, int] = {}
    rows_y: list[Any] = []
    rows_i: list[int] = []
    excluded: list[Any] = []
    matched: set[int] = set()
    missing: list[str] = []
    for key, tags in truth.items():
        at = predicted.get(key, predicted.get(os.path.abspath(key)))
        if at is None:
            missing.append(key)
            continue
        matched.add(at)
        known = []
        for tag in tags:
            name = mapping.get(tag, tag)
            if name in position:
                known.append(position[name])
            else:
                unknown[tag] = unknown.get(tag, 0) + 1
        if not known or (task == "singlelabel" and len(set(known)) != 1):
            excluded.append(
                {
                    "path": key,
                    "labels": tags,
                    "why": "no tag in the model's vocabulary" if not known else "more than one class",
                }
            )
            continue
        y = np.zeros(len(labels), np.float32)
        y[known] = 1.0
        rows_y.append(y)
        rows_i.append(at)
    not_in_truth = sorted(paths[i] for i in range(len(paths)) if i not in matched)
    if not rows_i:
        hint = ""
        if missing and not matched:
            hint = (
                f"; no path matches: the truth file names {missing[0]!r}, the predictions {paths[0]!r}. A relative"
                " path is taken from the working folder: run from the folder the truth file's paths start in, or"
                " write them as the tagged paths are written"
                if paths
                else ""
            )
        raise DataError(
            f"{truth_file}: no clip of the truth file has predictions and a tag in the model's vocabulary"
            f" ({len(missing)} missing from the predictions, {len(excluded)} without a usable tag){hint}"
        )
    y_true, y_score = np.stack(rows_y), scores[rows_i]
    if task == "multilabel":
        cut = np.full(len(labels), 0.5) if thresholds is None else np.asarray(thresholds)
        summary, per_tag = multilabel_report(
            y_true, y_score, cut, labels, y_pred=None if chosen is None else chosen[rows_i]
        )
    else:
        summary, per_tag = singlelabel_report(y_true, y_score, labels)
    summary.update(
        truth=os.path.abspath(truth_file),
        predictions=source,
        mapping=mapping_file and os.path.abspath(mapping_file),
        n_truth=len(truth),
        missing_from_predictions=missing,
        not_in_truth=not_in_truth,
        excluded=excluded,
        unknown_tags=dict(sorted(unknown.items())),
        mapping_to_unknown_tags={k: v for k, v in mapping.items() if v not in position},
        tags_without_positives=[t for t, col in zip(labels, y_true.T) if col.sum() == 0],
    )
    out_dir = check_evaluation_folder(out_dir, truth_file=truth_file, source=source, overwrite=overwrite)
    os.makedirs(out_dir, exist_ok=True)
    write_json_atomic(summary, os.path.join(out_dir, "metrics.json"))
    pd.DataFrame(per_tag).to_csv(os.path.join(out_dir, "per_tag.csv"), index=False)
    if plots:
        _plot(out_dir, task, per_tag, summary, labels)
    summary["out_dir"] = out_dir
    return summary


def check_evaluation_folder(
    out_dir: str | None, *, truth_file: str, source: str | None, overwrite: bool = False
) -> str:
    """The folder an evaluation against ``truth_file`` writes (default: the truth file's name with ``-eval``),
    refused where it holds another evaluation (other truth or predictions), unless ``overwrite``; the same
    evaluation is replaced. :func:`evaluate_truth` applies it, and ``tagger evaluate --truth`` before it tags.

    Raises
    ------
    ParameterError
        The folder holds another evaluation.
    DataError
        Its ``metrics.json`` cannot be read.
    """
    out_dir = out_dir or os.path.splitext(truth_file)[0] + "-eval"
    path = os.path.join(out_dir, "metrics.json")
    if overwrite or not os.path.exists(path):
        return out_dir
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); pass --overwrite to replace it, or --out another folder") from exc
    then = {k: old.get(k) for k in ("truth", "predictions")}
    if then != {"truth": os.path.abspath(truth_file), "predictions": source}:
        raise ParameterError(
            f"{out_dir} holds another evaluation ({then['predictions']} against {then['truth']}); pass --overwrite"
            " to replace it, or --out another folder"
        )
    return out_dir


def _plot(out_dir: str, task: str, rows: Any, summary: dict[str, Any], labels: list[str]) -> None:
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
