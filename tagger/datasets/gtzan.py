"""GTZAN (``genres/<genre>/<genre>.000NN.{au,wav}``) -> track index + embedding (or feature) cache.

From audio, the cache holds VGGish embeddings, or with ``features=True`` the
57 handcrafted features (:mod:`tagger.embedding.features`) of every track. From an
existing feature table such as Kaggle's ``features_30_sec.csv``
(:func:`prepare_table`), rows are joined to the split lists by file stem and
written as feature cache entries, so ``tagger train`` reads them as it reads
embeddings.

Splits: ``filtered`` (Kereliuk & Sturm's fault-filtered split, 443/197/290,
the default) or ``stratified`` (500/250/250), from the split lists whose
entries are matched to audio files by stem. ``genres='gtzan8'`` keeps the
eight-genre subset (dropping disco and rock, the two genres most confused
with the others), as the course projects this tool descends from did.
"""

import os

import pandas as pd

from ..embedding import cache, files, params
from ..embedding.features import FEATURE_NAMES, check_table_rows, read_table
from ..exceptions import DataError, ParameterError, TaggerWarning
from ..training import dataset
from .common import embed_dataset, fold_by_group, write_vocabulary

__all__ = ["GENRES", "SUBSETS", "read_splits", "prepare", "prepare_table"]

GENRES = ["blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"]
SUBSETS = {"all": GENRES, "gtzan8": [g for g in GENRES if g not in ("disco", "rock")]}
SPLITS = ("filtered", "stratified")


def read_splits(splits_dir, split="filtered"):
    """Map track stem (``blues.00012``) -> ``train`` / ``valid`` / ``test``."""
    if split not in SPLITS:
        raise ParameterError(f"split={split!r} must be one of {SPLITS}")
    out = {}
    for part in ("train", "valid", "test"):
        path = os.path.join(splits_dir, f"{part}_{split}.txt")
        if not os.path.exists(path):
            raise DataError(f"{path}: GTZAN split list missing")
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    out[os.path.splitext(os.path.basename(line.strip()))[0]] = part
    return out


def prepare(
    gtzan_dir,
    splits_dir,
    out_dir,
    *,
    split="filtered",
    genres="all",
    extractor=None,
    workers=None,
    progress=None,
    augment=0,
    augment_settings=None,
    root=None,
    summary=False,
):
    """Write ``index.csv`` + ``vocab.json`` for the tracks present, and embed them when an extractor is given.

    Track ids are the audio paths relative to ``root`` (default: the working
    folder), as ``tagger embed`` makes them (:func:`tagger.embedding.files.track_id_for`),
    so a cache it filled is reused.

    Tracks in no split list (the filtered split drops faulty ones) are left out.
    ``extractor`` may be a :class:`tagger.embedding.features.FeatureExtractor` or a
    :class:`tagger.embedding.spectrogram.PatchExtractor`: the cache then holds the tracks'
    handcrafted features, or their log-mel patches. ``augment`` adds that many
    augmented copies of every training track (:mod:`tagger.embedding.augment`).

    Returns
    -------
    str
        The index path; with ``summary``, ``(path, counts)``: indexed,
        embedded, reused (already in the cache), failed (path, reason) and
        missing (split-list tracks without audio).
    """
    keep = _genres(genres)
    assignment = read_splits(splits_dir, split)
    rows = []
    for genre in keep:
        folder = os.path.join(gtzan_dir, genre)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(name)
            if ext.lower() in (".au", ".wav") and stem in assignment:
                rows.append(
                    {
                        "track_id": files.track_id_for(os.path.join(folder, name), root),
                        "path": os.path.join(folder, name),
                        "split": assignment[stem],
                        "labels": genre,
                        "duration": None,
                    }
                )
    if not rows:
        raise DataError(f"{gtzan_dir}: no GTZAN tracks of {keep} found in the {split} split")
    found = {os.path.splitext(os.path.basename(r["path"]))[0] for r in rows}
    missing = sorted(s for s in assignment if s.split(".")[0] in keep and s not in found)
    df = _with_folds(pd.DataFrame(rows))
    os.makedirs(out_dir, exist_ok=True)
    write_vocabulary(keep, os.path.join(out_dir, "vocab.json"))
    counts = {"indexed": len(df), "embedded": 0, "reused": 0, "failed": [], "missing": missing, "fold_note": None}
    if "fold" not in df.columns:
        counts["fold_note"] = (
            f"no folds (data.cv_folds needs them): the rarest genre has {int(df['labels'].value_counts().min())}"
            " tracks, fewer than the 5 folds"
        )
    if extractor is not None:
        df, done = embed_dataset(
            df,
            os.path.join(out_dir, "cache"),
            extractor=extractor,
            augment=augment,
            augment_settings=augment_settings,
            workers=workers,
            progress=progress,
            summary=True,
        )
        counts.update(embedded=done["embedded"], reused=done["skipped"], failed=done["failures"])
    elif augment:
        raise ParameterError("augment needs the tracks embedded (or extracted): drop --no-embed")
    path = dataset.write_index(df, os.path.join(out_dir, "index.csv"))
    return (path, counts) if summary else path


def _genres(genres):
    if genres not in SUBSETS:
        raise ParameterError(f"genres={genres!r} must be one of {', '.join(SUBSETS)}")
    return SUBSETS[genres]


def prepare_table(table, splits_dir, out_dir, *, split="filtered", genres="all"):
    """A feature dataset from an existing GTZAN feature table: ``index.csv``, ``vocab.json`` and ``cache/``.

    Rows are joined to the split lists by file stem (``blues.00012.wav`` ->
    ``blues.00012``); the genre is the stem's prefix. The table holds file
    names only, so a track's id is its path in the ``genres/`` tree
    (``blues/blues.00012.wav``), as :func:`prepare` names the audio with
    ``root`` at that folder. Each track's cache entry
    is its (1, 57) feature row, of kind ``'features'``, recorded as made with
    the settings of :func:`tagger.embedding.params.feature_params` (which reproduce the
    table; see :mod:`tagger.embedding.features`), so a head trained on it tags audio
    through ``tagger features``' extraction.

    Returns
    -------
    str
        The index path.
    """
    keep = _genres(genres)
    assignment = read_splits(splits_dir, split)
    df = read_table(table)
    stems = check_table_rows(df, table)
    rows, entries = [], []
    for stem, (_, row) in zip(stems, df.iterrows()):
        genre = stem.split(".")[0]
        if stem not in assignment or genre not in keep:
            continue
        track_id = f"{genre}/{row['filename']}"
        rows.append(
            {
                "track_id": track_id,
                "path": "",
                "split": assignment[stem],
                "labels": genre,
                "duration": float(row["length"]) / params.FEATURE_SAMPLE_RATE if "length" in df.columns else None,
            }
        )
        entries.append((track_id, row[list(FEATURE_NAMES)].to_numpy(dtype="float64")[None, :], str(row["filename"])))
    if not rows:
        raise DataError(f"{table}: no rows of the {split} split's tracks of {keep}")
    found = {os.path.splitext(os.path.basename(r["track_id"]))[0] for r in rows}
    missing = sorted(set(s for s in assignment if s.split(".")[0] in keep) - found)
    if missing:
        import warnings

        warnings.warn(
            f"{table}: {len(missing)} tracks of the {split} split have no row (first: {missing[0]})",
            TaggerWarning,
            stacklevel=2,
        )
    os.makedirs(out_dir, exist_ok=True)
    write_vocabulary(keep, os.path.join(out_dir, "vocab.json"))
    df = _with_folds(pd.DataFrame(rows))
    cache_dir = os.path.join(out_dir, "cache")
    source = os.path.abspath(table)
    for track_id, values, filename in entries:
        entry = cache.make_entry(
            values,
            [0.0],
            kind="features",
            frontend=params.feature_params(),
            weights=params.FEATURE_SET,
            source=f"{source}#{filename}",
        )
        cache.write_entry(cache_dir, track_id, entry)
    return dataset.write_index(df, os.path.join(out_dir, "index.csv"))


def _with_folds(df, n_folds=5, seed=0):
    """Add a ``fold`` column: 5 folds over every track, stratified by genre (seeded), for ``data.cv_folds``.

    GTZAN has no artist column to group by: these folds are the course projects'
    plain stratified cross-validation, not an artist-filtered one.
    """
    if df["labels"].value_counts().min() < n_folds:
        return df
    df = df.copy()
    df["fold"] = fold_by_group(df["track_id"].tolist(), df["labels"].tolist(), n_folds=n_folds, seed=seed)
    return df
