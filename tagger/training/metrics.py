"""Clip-level metrics: per-tag ROC-AUC / PR-AUC / thresholded P-R-F1, accuracy and confusion."""

import numpy as np
from sklearn import metrics as skm

__all__ = ["macro_pr_auc", "choose_thresholds", "multilabel_report", "singlelabel_report", "monitor_score"]


def _with_both_classes(y):
    return np.flatnonzero((y.sum(0) > 0) & (y.sum(0) < len(y)))


def macro_pr_auc(y_true, y_score):
    """Mean average precision over tags that have positives and negatives."""
    cols = _with_both_classes(y_true)
    return (
        float(np.mean([skm.average_precision_score(y_true[:, c], y_score[:, c]) for c in cols]))
        if len(cols)
        else float("nan")
    )


def macro_roc_auc(y_true, y_score):
    cols = _with_both_classes(y_true)
    return float(np.mean([skm.roc_auc_score(y_true[:, c], y_score[:, c]) for c in cols])) if len(cols) else float("nan")


def monitor_score(task, y_true, y_score):
    """The validation score training watches: macro PR-AUC (multi-label) or accuracy (single-label)."""
    if task == "multilabel":
        return macro_pr_auc(y_true, y_score)
    return float(np.mean(np.argmax(y_true, 1) == np.argmax(y_score, 1)))


def choose_thresholds(y_true, y_score):
    """Per-tag threshold maximising F1 on (validation) data; 0.5 where a tag has no positives.

    Returns
    -------
    np.ndarray, shape (n_tags,)
    """
    out = np.full(y_true.shape[1], 0.5)
    for c in range(y_true.shape[1]):
        if y_true[:, c].sum() == 0:
            continue
        precision, recall, thresholds = skm.precision_recall_curve(y_true[:, c], y_score[:, c])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        out[c] = float(thresholds[int(np.argmax(f1))])
    return out


def multilabel_report(y_true, y_score, thresholds, labels, *, y_pred=None):
    """Per-tag and averaged metrics for multi-label predictions.

    Returns
    -------
    summary : dict
        macro and micro ROC-AUC, PR-AUC, precision, recall, F1.
    per_tag : list of dict
        tag, support, roc_auc, pr_auc, threshold, precision, recall, f1.
    """
    if y_pred is None:
        y_pred = (y_score >= thresholds[None, :]).astype(int)
    rows = []
    for c, tag in enumerate(labels):
        t, s, p = y_true[:, c], y_score[:, c], y_pred[:, c]
        both = 0 < t.sum() < len(t)
        rows.append(
            {
                "tag": tag,
                "support": int(t.sum()),
                "roc_auc": float(skm.roc_auc_score(t, s)) if both else float("nan"),
                "pr_auc": float(skm.average_precision_score(t, s)) if both else float("nan"),
                "threshold": float(thresholds[c]),
                "precision": float(skm.precision_score(t, p, zero_division=0)),
                "recall": float(skm.recall_score(t, p, zero_division=0)),
                "f1": float(skm.f1_score(t, p, zero_division=0)),
            }
        )
    cols = _with_both_classes(y_true)
    summary = {
        "n_clips": int(len(y_true)),
        "n_tags_scored": int(len(cols)),
        "macro_roc_auc": macro_roc_auc(y_true, y_score),
        "macro_pr_auc": macro_pr_auc(y_true, y_score),
        "micro_roc_auc": float(skm.roc_auc_score(y_true[:, cols], y_score[:, cols], average="micro"))
        if len(cols)
        else float("nan"),
        "micro_pr_auc": float(skm.average_precision_score(y_true[:, cols], y_score[:, cols], average="micro"))
        if len(cols)
        else float("nan"),
        "macro_precision": float(np.mean([r["precision"] for r in rows])),
        "macro_recall": float(np.mean([r["recall"] for r in rows])),
        "macro_f1": float(np.mean([r["f1"] for r in rows])),
        "micro_precision": float(skm.precision_score(y_true, y_pred, average="micro", zero_division=0)),
        "micro_recall": float(skm.recall_score(y_true, y_pred, average="micro", zero_division=0)),
        "micro_f1": float(skm.f1_score(y_true, y_pred, average="micro", zero_division=0)),
    }
    return summary, rows


def singlelabel_report(y_true, y_score, labels):
    """Accuracy, macro-F1, per-class recall and the confusion matrix."""
    t, p = np.argmax(y_true, 1), np.argmax(y_score, 1)
    idx = list(range(len(labels)))
    recall = skm.recall_score(t, p, labels=idx, average=None, zero_division=0)
    summary = {
        "n_clips": int(len(t)),
        "accuracy": float(np.mean(t == p)),
        "macro_f1": float(skm.f1_score(t, p, labels=idx, average="macro", zero_division=0)),
        "confusion": skm.confusion_matrix(t, p, labels=idx).tolist(),
    }
    rows = [{"tag": name, "support": int((t == i).sum()), "recall": float(recall[i])} for i, name in enumerate(labels)]
    return summary, rows
