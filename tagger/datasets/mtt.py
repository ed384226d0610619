"""MagnaTagATune -> track index + embedding cache.

Reads the official ``annotations_final.csv`` (tab-separated, every field
double-quoted: ``clip_id``, 188 tag columns of 0/1, ``mp3_path``). Vocabulary:
``top50`` (the 50 most frequent tags, the list everyone uses) or ``all``
(188). Split by the audio folder of ``mp3_path``: ``0``-``b`` train, ``c``
valid, ``d``-``f`` test. Clips with no tag in the vocabulary are dropped.
"""

import os

import pandas as pd

from ..embedding import files
from ..exceptions import DataError, ParameterError
from ..tables import read_table
from ..training import dataset
from .common import embed_dataset, write_vocabulary

__all__ = ["read_annotations", "vocabulary", "folder_split", "prepare"]

VOCABULARIES = ("top50", "all")


def read_annotations(path):
    """The annotations table: ``clip_id``, tag columns (0/1 ints), ``mp3_path``."""
    df = read_table(path, what="annotations file", sep="\t", quotechar='"', dtype={"clip_id": str, "mp3_path": str})
    for column in ("clip_id", "mp3_path"):
        if column not in df.columns:
            raise DataError(f"{path}: annotations lack the {column!r} column")
    tags = [c for c in df.columns if c not in ("clip_id", "mp3_path")]
    df[tags] = df[tags].astype(int)
    return df


def vocabulary(df, which="top50"):
    """``top50``: tags ordered by frequency (ties by column order), first 50; ``all``: every tag column."""
    if which not in VOCABULARIES:
        raise ParameterError(f"vocabulary={which!r} must be one of {VOCABULARIES}")
    tags = [c for c in df.columns if c not in ("clip_id", "mp3_path")]
    if which == "all":
        return tags
    counts = df[tags].sum()
    return sorted(tags, key=lambda t: (-counts[t], tags.index(t)))[:50]


def folder_split(mp3_path):
    """``0``-``9``, ``a``, ``b`` -> train; ``c`` -> valid; ``d``-``f`` -> test."""
    folder = str(mp3_path).split("/", 1)[0].lower()
    if folder == "c":
        return "valid"
    if folder in ("d", "e", "f"):
        return "test"
    if folder in "0123456789ab" and len(folder) == 1:
        return "train"
    raise DataError(f"mp3_path {mp3_path!r}: folder {folder!r} is not one of 0-9, a-f")


def prepare(
    annotations,
    audio_dir,
    out_dir,
    *,
    which="top50",
    extractor=None,
    require_audio=False,
    workers=None,
    progress=None,
    augment=0,
    augment_settings=None,
    root=None,
    summary=False,
):
    """Write ``index.csv`` + ``vocab.json``; embed the clips whose audio is present when an extractor is given.

    Track ids are the audio paths relative to ``root`` (default: the working
    folder), as ``tagger embed`` makes them, so a cache it filled is reused;
    the index keeps MagnaTagATune's ``clip_id`` beside them.

    Returns
    -------
    str
        The index path; with ``summary``, ``(path, counts)``: indexed,
        embedded, reused (already in the cache), failed (path, reason) and
        missing (indexed clips without audio).
    """
    df = read_annotations(annotations)
    vocab = vocabulary(df, which)
    labels = df[vocab].apply(lambda row: dataset.SEPARATOR.join(t for t in vocab if row[t]), axis=1)
    keep = labels != ""
    index = pd.DataFrame(
        {
            "track_id": [files.track_id_for(os.path.join(audio_dir, p), root) for p in df["mp3_path"][keep]],
            "path": [os.path.join(audio_dir, p) for p in df["mp3_path"][keep]],
            "split": df["mp3_path"][keep].map(folder_split),
            "labels": labels[keep],
            "duration": None,
            "mp3_path": df["mp3_path"][keep],
            "clip_id": df["clip_id"][keep].astype(str),
        }
    )
    present = index["path"].map(os.path.exists)
    if require_audio and not present.all():
        raise DataError(
            f"{audio_dir}: {int((~present).sum())} of {len(index)} clips have no audio, e.g. {index['path'][~present].iloc[0]}"
        )
    os.makedirs(out_dir, exist_ok=True)
    write_vocabulary(vocab, os.path.join(out_dir, "vocab.json"))
    counts = {
        "indexed": len(index),
        "embedded": 0,
        "reused": 0,
        "failed": [],
        "missing": index["path"][~present].tolist(),
    }
    if extractor is not None and present.any():
        embedded, done = embed_dataset(
            index[present],
            os.path.join(out_dir, "cache"),
            extractor=extractor,
            augment=augment,
            augment_settings=augment_settings,
            workers=workers,
            progress=progress,
            summary=True,
        )
        counts.update(embedded=done["embedded"], reused=done["skipped"], failed=done["failures"])
        index = pd.concat([embedded, index[~present]], ignore_index=True) if (~present).any() else embedded
    path = dataset.write_index(index, os.path.join(out_dir, "index.csv"))
    return (path, counts) if summary else path
