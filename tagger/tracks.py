"""Track indexes and label matrices: the dataset contract shared by preprocess, train and evaluate.

A track index is a table (CSV or Parquet) with the columns ``track_id``,
``path`` (empty for AudioSet), ``split``, ``labels`` (tag names joined by
``|``) and ``duration``. Embeddings live in the cache under ``track_id``.
"""

import json
import os

import numpy as np
import pandas as pd

from . import cache
from .exceptions import DataError

__all__ = [
    "INDEX_COLUMNS",
    "write_index",
    "read_index",
    "label_matrix",
    "load_embeddings",
    "write_vocabulary",
    "read_vocabulary",
]

INDEX_COLUMNS = ("track_id", "path", "split", "labels", "duration")
SEPARATOR = "|"


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


def load_embeddings(track_ids, cache_dir, *, frontend=None, weights=None):
    """Read the cached embeddings of tracks as float32 (dequantised when stored as uint8).

    Every entry must hold the same kind of embedding (raw or postprocessed):
    a head trains on one.

    Returns
    -------
    list of np.ndarray, each shape (T_i, 128), float32
    """
    out, first = [], None
    for track_id in track_ids:
        entry = cache.read_entry(cache_dir, track_id, frontend=frontend, weights=weights)
        if first is None:
            first = (track_id, entry["kind"])
        elif entry["kind"] != first[1]:
            raise DataError(
                f"{cache_dir}: the cache mixes embeddings: {first[0]} is {first[1]}, {track_id} is"
                f" {entry['kind']}; a head trains on one kind (re-embed into a separate cache)"
            )
        out.append(cache.embedding_as_float(entry))
    return out


def write_vocabulary(names, path):
    """Write a vocabulary: a JSON list of tag names, in output order."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(list(names), f, indent=1)
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
