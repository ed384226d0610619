"""The dataset contract shared by preprocess, training and evaluation: track indexes, vocabularies, splits.

A track index is a table (CSV or Parquet) with the columns ``track_id``,
``path`` (empty for AudioSet), ``split``, ``labels`` (tag names joined by
``|``) and ``duration``. Embeddings live in the cache under ``track_id``.
"""

import json
import os
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..embedding import cache, provenance
from ..exceptions import DataError
from ..records import write_json_atomic
from .config import data_path

__all__ = [
    "originals",
    "INDEX_COLUMNS",
    "write_index",
    "read_index",
    "label_matrix",
    "Embeddings",
    "load_embeddings",
    "check_same_provenance",
    "write_vocabulary",
    "read_vocabulary",
    "Split",
    "join_splits",
    "Dataset",
    "load_split",
    "nested_folds",
    "selection_data",
]

INDEX_COLUMNS = ("track_id", "path", "split", "labels", "duration")
SEPARATOR = "|"


def originals(df):
    """The rows of a track index that are not augmented copies (index column ``augmented_from`` empty or absent)."""
    if "augmented_from" not in df.columns:
        return df
    return df[df["augmented_from"].fillna("").astype(str) == ""]


def write_index(df, path):
    """Write a track index (CSV, or Parquet for ``.parquet``) after checking its columns."""
    missing = [c for c in INDEX_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"track index lacks columns {missing}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    df = df[list(INDEX_COLUMNS) + [c for c in df.columns if c not in INDEX_COLUMNS]]
    if str(path).endswith(".parquet"):
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path


def read_index(path):
    """Read a track index; every column as written, ``labels`` and ``path`` as strings."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such track index")
    if str(path).endswith(".parquet"):
        df = pd.read_parquet(path)
    else:
        df = pd.read_csv(path, dtype={"track_id": str, "path": str, "split": str, "labels": str}, keep_default_na=False)
    missing = [c for c in INDEX_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: track index lacks columns {missing}")
    return df


def label_matrix(labels, vocabulary):
    """Multi-hot matrix of ``|``-joined label strings over a vocabulary.

    Returns
    -------
    np.ndarray, shape (n_tracks, len(vocabulary)), float32
    """
    position = {name: i for i, name in enumerate(vocabulary)}
    y = np.zeros((len(labels), len(vocabulary)), np.float32)
    for row, text in enumerate(labels):
        for name in str(text).split(SEPARATOR) if text else ():
            if name in position:
                y[row, position[name]] = 1.0
    return y


class Embeddings(list):
    """Embeddings of a dataset's tracks (a list of (T_i, D) float32 arrays) with their shared ``provenance`` record."""

    provenance = None


def load_embeddings(track_ids, cache_dir):
    """Read the cached embeddings of tracks as float32 (dequantised when stored as uint8).

    Every entry must come from one provenance (weights, PCA parameters,
    frontend, precision and kind; :meth:`tagger.embedding.cache.CacheView.load`):
    a head trains on one.

    Returns
    -------
    Embeddings
        A list of np.ndarray, each shape (T_i, 128), float32; ``.provenance``
        the record they share (None when there are none).
    """
    entries = cache.CacheView(cache_dir).load(list(track_ids))
    out = Embeddings(cache.embedding_as_float(entry) for entry in entries)
    out.provenance = cache.dataset_provenance(entries) if entries else None
    return out


def check_same_provenance(parts, where):
    """Refuse splits of one dataset whose embeddings differ in provenance (``parts``: name -> Embeddings)."""
    named = [(name, emb.provenance) for name, emb in parts.items() if emb.provenance is not None]
    for name, record in named[1:]:
        diff = provenance.differences(named[0][1], record, fields=cache.DATASET_FIELDS, labels=(named[0][0], name))
        if diff:
            raise DataError(
                f"{where}: the {named[0][0]} and {name} splits hold embeddings of other provenances: {'; '.join(diff)}"
            )


def write_vocabulary(names, path):
    """Write a vocabulary: a JSON list of tag names, in output order."""
    write_json_atomic(list(names), path)
    return path


def read_vocabulary(path):
    """Read a vocabulary file (a non-empty JSON list of tag names)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such vocabulary file")
    with open(path, encoding="utf-8") as f:
        names = json.load(f)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataError(f"{path}: a vocabulary is a non-empty JSON list of tag names")
    return names


class Split(NamedTuple):
    """The tracks of one split (or fold) of a dataset: ``ids``, ``embeddings`` and the label matrix ``y``.

    Attributes
    ----------
    ids : list of str
        Track ids.
    embeddings : Embeddings
        Each (T_i, D) float32; ``.provenance`` the record they share.
    y : np.ndarray, shape (n, n_labels), float32
    """

    ids: list
    embeddings: Embeddings
    y: np.ndarray

    def take(self, rows):
        """The tracks at positions ``rows`` (sequence of int), in that order, with the same provenance."""
        rows = [int(i) for i in rows]
        embeddings = Embeddings(self.embeddings[i] for i in rows)
        embeddings.provenance = self.embeddings.provenance
        return Split([self.ids[i] for i in rows], embeddings, self.y[rows])


def join_splits(*parts, where="splits"):
    """One :class:`Split` of several (train + valid, to retrain on both); they must share one provenance."""
    check_same_provenance({f"part {i}": p.embeddings for i, p in enumerate(parts)}, where)
    embeddings = Embeddings(e for p in parts for e in p.embeddings)
    embeddings.provenance = next((p.embeddings.provenance for p in parts if p.embeddings.provenance), None)
    return Split([i for p in parts for i in p.ids], embeddings, np.concatenate([p.y for p in parts]))


class Dataset:
    """The dataset of a config: its track index and vocabulary read once, its splits and folds loaded by name.

    Parameters
    ----------
    cfg : dict
        A validated config (:func:`tagger.training.config.validate`); its ``data`` section names the files.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.index_path = data_path(cfg, "index")
        self.cache_dir = data_path(cfg, "cache")
        self.index = read_index(self.index_path)
        self.vocabulary = read_vocabulary(data_path(cfg, "vocabulary"))

    def split_names(self):
        """The values of the index's ``split`` column, each once, in order of appearance."""
        return list(dict.fromkeys(self.index["split"].tolist()))

    def split(self, name, *, augmented=False):
        """The tracks whose ``split`` column is ``name`` (:class:`Split`); ``augmented``: with augmented copies."""
        return self._load(self.index[self.index["split"] == name], augmented)

    def fold(self, k):
        """The tracks of fold ``k`` (scored: never augmented copies)."""
        return self._load(self._folds()[self.index["fold"] == k], False)

    def without_folds(self, folds, *, augmented=False):
        """Every track except those of ``folds`` (an int or a sequence of int)."""
        return self._load(self._folds()[~self.index["fold"].isin(np.atleast_1d(folds).tolist())], augmented)

    def _folds(self):
        if "fold" not in self.index.columns:
            raise DataError(f"{self.index_path}: cross-validation needs a 'fold' column")
        return self.index

    def _load(self, df, augmented):
        if not augmented:
            df = originals(df)
        y = label_matrix(df["labels"].tolist(), self.vocabulary)
        keep = y.sum(1) > 0
        ids = df["track_id"].astype(str).to_numpy()[keep].tolist()
        return Split(ids, load_embeddings(ids, self.cache_dir), y[keep])

    def nested_folds(self):
        """(held-out fold, selection fold) pairs of a cross-validated config, checked before any training.

        The first ``data.cv_folds`` folds of the index's ``fold`` column are held
        out in turn; each one's selection fold is the next fold present in the
        index (cyclically), so at least three folds must be there.

        Returns
        -------
        list of (int, int)
        """
        n = int(self.cfg["data"]["cv_folds"])
        if "fold" not in self.index.columns:
            raise DataError(f"{self.index_path}: config key data.cv_folds={n} needs a 'fold' column in the index")
        present = sorted(int(f) for f in self.index["fold"].unique())
        if len(present) < 3:
            raise DataError(
                f"{self.index_path}: nested cross-validation needs at least 3 folds, the index has {present}"
            )
        if n > len(present):
            raise DataError(f"config key data.cv_folds={n}: the index {self.index_path} has only {len(present)} folds")
        return [(present[i], present[(i + 1) % len(present)]) for i in range(n)]

    def selection(self, k, j):
        """Training and validation data of held-out fold k's selection run: every fold but k and j, then fold j.

        Augmented copies train (in their source's fold); fold j is scored without them.
        """
        return self.without_folds((k, j), augmented=True), self.fold(j)


def load_split(cfg, split, *, fold=None, exclude_fold=None, augmented=False):
    """One split (or fold) of the config's dataset: :class:`Split` (``ids, embeddings, y``).

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
    """
    dataset = Dataset(cfg)
    if fold is not None:
        return dataset.fold(fold)
    if exclude_fold is not None:
        return dataset.without_folds(exclude_fold, augmented=augmented)
    return dataset.split(split, augmented=augmented)


def nested_folds(cfg):
    """:meth:`Dataset.nested_folds` of the config's dataset."""
    return Dataset(cfg).nested_folds()


def selection_data(cfg, k, j):
    """:meth:`Dataset.selection` of the config's dataset."""
    return Dataset(cfg).selection(k, j)
