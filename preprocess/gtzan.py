"""GTZAN (``genres/<genre>/<genre>.000NN.{au,wav}``) -> track index + embedding cache.

Splits: ``filtered`` (Kereliuk & Sturm's fault-filtered split, 443/197/290,
the default) or ``stratified`` (500/250/250), from the split lists whose
entries are matched to audio files by stem. ``genres='gtzan8'`` keeps the
eight-genre subset (dropping disco and rock, the two genres most confused
with the others), as the course projects this tool descends from did.
"""

import os

import pandas as pd

from tagger import tracks
from tagger.exceptions import DataError, ParameterError

from .common import write_vocabulary

__all__ = ["GENRES", "SUBSETS", "read_splits", "prepare"]

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


def prepare(gtzan_dir, splits_dir, out_dir, *, split="filtered", genres="all", embedder=None, workers=None, progress=None):
    """Write ``index.csv`` + ``vocab.json`` for the tracks present, and embed them when an embedder is given.

    Tracks in no split list (the filtered split drops faulty ones) are left out.

    Returns
    -------
    str
        The index path.
    """
    if genres not in SUBSETS:
        raise ParameterError(f"genres={genres!r} must be one of {', '.join(SUBSETS)}")
    keep = SUBSETS[genres]
    assignment = read_splits(splits_dir, split)
    rows = []
    for genre in keep:
        folder = os.path.join(gtzan_dir, genre)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(name)
            if ext.lower() in (".au", ".wav") and stem in assignment:
                rows.append({"track_id": stem, "path": os.path.join(folder, name), "split": assignment[stem], "labels": genre, "duration": None})
    if not rows:
        raise DataError(f"{gtzan_dir}: no GTZAN tracks of {keep} found in the {split} split")
    df = pd.DataFrame(rows)
    os.makedirs(out_dir, exist_ok=True)
    write_vocabulary(keep, os.path.join(out_dir, "vocab.json"))
    if embedder is not None:
        from tagger.embed import embed_items

        embed_items(list(zip(df["path"], df["track_id"])), os.path.join(out_dir, "cache"), embedder=embedder, workers=workers, progress=progress)
    return tracks.write_index(df, os.path.join(out_dir, "index.csv"))
