"""Helpers shared by the dataset adapters: seeded splits and vocabulary files."""

import numpy as np

from tagger.tracks import read_vocabulary, write_vocabulary  # noqa: F401 - re-exported for the adapters

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
