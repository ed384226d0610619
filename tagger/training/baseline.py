"""The floor every head must clear: logistic regression on mean-pooled embeddings."""

import numpy as np

from .dataset import Dataset
from .metrics import monitor_score

__all__ = ["mean_pool", "logistic_scores", "logistic_baseline", "nested_cv_baseline"]


def mean_pool(embeddings):
    """(n, 128) float32: each track's mean embedding."""
    return np.stack([e.mean(axis=0) for e in embeddings]).astype(np.float32)


def logistic_scores(x_train, y_train, x_valid, task, *, C=1.0, seed=0):
    """Standardise clip features, fit scikit-learn logistic regression, score the validation clips.

    Multi-label: one binary model per tag (tags without both classes in
    training predict their training rate). Single-label: multinomial.

    Parameters
    ----------
    x_train : np.ndarray, shape (n_train, d)
        One feature vector per clip (the baseline: mean-pooled embeddings).
    y_train : np.ndarray, shape (n_train, n_outputs)
    x_valid : np.ndarray, shape (n_valid, d)
    task : {'multilabel', 'singlelabel'}

    Returns
    -------
    np.ndarray, shape (n_valid, n_outputs)
        Validation probabilities.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    x_train, x_valid = scaler.transform(x_train), scaler.transform(x_valid)
    scores = np.zeros((len(x_valid), y_train.shape[1]), dtype=y_train.dtype)
    if task == "singlelabel":
        clf = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(x_train, y_train.argmax(1))
        scores[:, clf.classes_] = clf.predict_proba(x_valid)
        return scores
    for c in range(y_train.shape[1]):
        positives = y_train[:, c].sum()
        if 0 < positives < len(y_train):
            clf = LogisticRegression(C=C, max_iter=1000, random_state=seed).fit(x_train, y_train[:, c])
            scores[:, c] = clf.predict_proba(x_valid)[:, 1]
        else:
            scores[:, c] = positives / len(y_train)
    return scores


def logistic_baseline(train_data, valid_data, task, *, C=1.0, seed=0, return_scores=False):
    """Logistic regression on mean-pooled, standardised embeddings (:func:`logistic_scores`).

    Returns
    -------
    float
        The same validation score training monitors (macro PR-AUC or accuracy).
    np.ndarray, shape (n_valid, n_outputs)
        The validation probabilities, with ``return_scores=True``.
    """
    scores = logistic_scores(
        mean_pool(train_data.embeddings), train_data.y, mean_pool(valid_data.embeddings), task, C=C, seed=seed
    )
    score = monitor_score(task, valid_data.y, scores)
    return (score, scores) if return_scores else score


def nested_cv_baseline(cfg, grid):
    """The baseline under the heads' nested cross-validation (:func:`tagger.training.train.cross_validate`).

    For each held-out fold k, C is chosen from ``grid`` on the selection fold
    (fitting on the other folds), then the model is refit on every fold but
    k with that C and scored on fold k.

    Parameters
    ----------
    cfg : dict
        A validated config with ``data.cv_folds`` > 1.
    grid : sequence of float
        Candidate inverse regularisation strengths.

    Returns
    -------
    dict
        ``mean``, ``std``, ``fold_scores`` (held-out folds) and ``fold_C`` (the C each fold chose).
    """
    scores, chosen = [], []
    task = cfg["data"]["task"]
    dataset = Dataset(cfg)
    for k, j in dataset.nested_folds():
        inner_train, inner_valid = dataset.without_folds((k, j)), dataset.fold(j)
        inner = {C: logistic_baseline(inner_train, inner_valid, task, C=C) for C in grid}
        best = max(grid, key=lambda C: inner[C])  # the first of equal scores
        chosen.append(best)
        scores.append(logistic_baseline(dataset.without_folds(k), dataset.fold(k), task, C=best))
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "fold_scores": scores, "fold_C": chosen}
