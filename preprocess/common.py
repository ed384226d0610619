"""Helpers shared by the dataset adapters: seeded splits and vocabulary files."""

import json
import os

import numpy as np

from tagger.exceptions import DataError

__all__ = ["split_by_group", "fold_by_group", "write_vocabulary", "read_vocabulary"]


def split_by_group(groups, *, valid_fraction, seed):
    """Seeded train/valid assignment keeping each group (video, artist) on one side.

    Returns
    -------
    np.ndarray of str, ``'train'`` or ``'valid'`` per item
    """
    unique = np.array(sorted(set(groups)))
    rng = np.random.default_rng(seed)
    valid = set(rng.permutation(unique)[: int(round(valid_fraction * len(unique)))])
    return np.array(["valid" if g in valid else "train" for g in groups])


def fold_by_group(groups, labels, *, n_folds, seed):
    """Seeded fold number per item, stratified by label and grouped (sklearn StratifiedGroupKFold)."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = np.zeros(len(groups), int)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(groups)), labels, groups)):
        folds[test] = k
    return folds


def write_vocabulary(names, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(list(names), f, indent=1)
    return path


def read_vocabulary(path):
    if not os.path.exists(path):
        raise DataError(f"{path}: no such vocabulary file")
    with open(path, encoding="utf-8") as f:
        names = json.load(f)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataError(f"{path}: a vocabulary is a non-empty JSON list of tag names")
    return names
