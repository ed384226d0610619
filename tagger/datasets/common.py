"""Helpers shared by the dataset adapters: seeded splits and vocabulary files."""

import numpy as np

from ..embedding.augment import augmented_rows
from ..embedding.embed import embed_items
from ..training.dataset import read_vocabulary, write_vocabulary  # noqa: F401 - re-exported for the adapters

__all__ = ["split_by_group", "fold_by_group", "write_vocabulary", "read_vocabulary", "embed_dataset"]


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


def embed_dataset(
    index, cache_dir, *, extractor, augment=0, augment_settings=None, workers=None, progress=None, summary=False
):
    """Embed (or extract) an index's tracks into the cache, plus ``augment`` augmented copies of each training track.

    Parameters
    ----------
    index : pandas.DataFrame
        The track index; rows with audio only (``path`` exists).
    extractor : tagger.embedding.extractor.Extractor
    augment : int
        Copies per training track (:func:`tagger.embedding.augment.augmented_rows`); never of validation or test tracks.

    Returns
    -------
    pandas.DataFrame
        The index with the copies' rows appended (``augmented_from`` names each copy's source);
        with ``summary``, also :func:`tagger.embedding.embed.embed_items`' summary.
    """
    import pandas as pd

    items = list(zip(index["path"], index["track_id"]))
    if augment:
        copies, copy_items = augmented_rows(index, augment, settings=augment_settings)
        items += copy_items
        index = pd.concat([index.assign(augmented_from=""), copies], ignore_index=True)
    done = embed_items(items, cache_dir, extractor=extractor, workers=workers, progress=progress)
    return (index, done) if summary else index
