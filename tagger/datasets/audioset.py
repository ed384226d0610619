"""AudioSet's released VGGish features -> embedding cache + track indexes.

The records (``bal_train/*.tfrecord``) are ``tf.SequenceExample``: context
``video_id``, ``start_time_seconds``, ``end_time_seconds``, ``labels``;
feature list ``audio_embedding``, one 128-byte string per 0.96 s frame. The
frames are already PCA-whitened and quantised: they are cached as uint8 and
dequantised on read.

Vocabularies: ``527`` (all classes), ``music`` (the Music class and its
subtree, segments with at least one), ``genre10`` (the ten GTZAN genres,
segments with exactly one, single-label).
"""

import glob
import json
import os

import numpy as np
import pandas as pd

from .. import locks
from ..console import progress_bar
from ..embedding import cache, provenance
from ..embedding.vggish import params
from ..exceptions import DataError, ParameterError
from ..training import dataset
from .common import fold_by_group, split_by_group, write_vocabulary

__all__ = ["VOCABULARIES", "GENRE10", "WEIGHTS_ID", "read_records", "prepare"]

VOCABULARIES = ("527", "music", "genre10")
GENRE10 = [
    "Blues",
    "Classical music",
    "Country",
    "Disco",
    "Hip hop music",
    "Jazz",
    "Heavy metal",
    "Pop music",
    "Reggae",
    "Rock music",
]
WEIGHTS_ID = "audioset-release-vggish"  # the network of the released features (cache entries' `weights`)
PCA_ID = "audioset-release-pca"  # they are postprocessed with the official PCA parameters
MUSIC_MID = "/m/04rlf"


def read_records(folder):
    """Parse every ``*.tfrecord`` in ``folder``.

    Returns
    -------
    list of dict
        ``video_id`` str, ``start`` float, ``end`` float, ``labels`` list of int,
        ``frames`` np.ndarray (T, 128) uint8.
    """
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(os.fspath(folder), "*.tfrecord")))
    if not files:
        raise DataError(f"{folder}: no *.tfrecord files")
    context = {
        "video_id": tf.io.FixedLenFeature([], tf.string),
        "start_time_seconds": tf.io.FixedLenFeature([], tf.float32),
        "end_time_seconds": tf.io.FixedLenFeature([], tf.float32),
        "labels": tf.io.VarLenFeature(tf.int64),
    }
    sequence = {"audio_embedding": tf.io.FixedLenSequenceFeature([], tf.string)}

    def parse(raw):
        ctx, seq = tf.io.parse_single_sequence_example(raw, context_features=context, sequence_features=sequence)
        frames = tf.io.decode_raw(seq["audio_embedding"], tf.uint8)
        return (
            ctx["video_id"],
            ctx["start_time_seconds"],
            ctx["end_time_seconds"],
            tf.sparse.to_dense(ctx["labels"]),
            frames,
        )

    records = []
    dataset = tf.data.TFRecordDataset(files).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    for vid, start, end, labels, frames in dataset.as_numpy_iterator():
        records.append(
            {
                "video_id": vid.decode(),
                "start": float(start),
                "end": float(end),
                "labels": labels.tolist(),
                "frames": frames,
            }
        )
    return records


def music_subtree(ontology_path, class_names_by_mid):
    """Display names of Music and all its descendants that have data."""
    with open(ontology_path, encoding="utf-8") as f:
        nodes = {n["id"]: n for n in json.load(f)}
    seen, stack = [], [MUSIC_MID]
    while stack:
        mid = stack.pop()
        if mid in seen:
            continue
        seen.append(mid)
        stack.extend(nodes[mid]["child_ids"])
    return [class_names_by_mid[m] for m in sorted(class_names_by_mid) if m in seen]


def released_provenance():
    """The provenance record of AudioSet's released embeddings (official VGGish and PCA, float32, postprocessed)."""
    return provenance.record(
        weights=WEIGHTS_ID, precision="float32", pca=PCA_ID, frontend=params.frontend_params(), kind="postprocessed"
    )


def track_id(record):
    return f"{record['video_id']}_{int(round(record['start'] * 1000))}"


def prepare(audioset_dir, out_dir, *, vocabularies=VOCABULARIES, valid_fraction=0.2, n_folds=5, seed=0, progress=None):
    """Cache the released embeddings and write one index per vocabulary.

    Parameters
    ----------
    audioset_dir : str
        Folder holding ``bal_train/``, ``class_labels_indices.csv`` and ``ontology.json``.
    out_dir : str
        Gets ``cache/`` (one entry per segment), ``index_<vocab>.csv`` and ``vocab_<vocab>.json``.
    vocabularies : sequence of {'527', 'music', 'genre10'}
    valid_fraction : float
        Share of videos in the validation split (seeded).
    n_folds : int
        Folds (grouped by video, stratified) written in the ``fold`` column of ``genre10``.
    seed : int

    Returns
    -------
    dict
        vocabulary -> index path
    """
    for v in vocabularies:
        if v not in VOCABULARIES:
            raise ParameterError(f"unknown AudioSet vocabulary {v!r}; valid: {', '.join(VOCABULARIES)}")
    classes = pd.read_csv(os.path.join(audioset_dir, "class_labels_indices.csv"))
    names = classes["display_name"].tolist()
    records = read_records(os.path.join(audioset_dir, "bal_train"))
    cache_dir = os.path.join(out_dir, "cache")
    frontend = params.frontend_params()
    os.makedirs(cache_dir, exist_ok=True)
    view = cache.CacheView(cache_dir, released_provenance())
    with locks.exclusive(locks.folder_lock_path(cache_dir), what=f"cache {cache_dir}"):
        for rec in progress_bar(records, desc="cache", unit="segment", progress=progress):
            tid = track_id(rec)
            if view.judge(tid).hit:  # anything else (older format, invalid) is rewritten: it is ours to make
                continue
            times = np.arange(len(rec["frames"])) * params.EXAMPLE_HOP_SECONDS + rec["start"]
            entry = cache.make_entry(
                rec["frames"],
                times,
                kind="postprocessed",
                pca=PCA_ID,
                frontend=frontend,
                weights=WEIGHTS_ID,
                source=f"audioset:{rec['video_id']}:{rec['start']:.3f}",
                duration=rec["end"] - rec["start"],
            )
            view.store(tid, entry)
    base = pd.DataFrame(
        {
            "track_id": [track_id(r) for r in records],
            "path": "",
            "video_id": [r["video_id"] for r in records],
            "label_names": [[names[i] for i in r["labels"]] for r in records],
            "duration": [r["end"] - r["start"] for r in records],
        }
    )
    vocab_lists = {
        "527": names,
        "music": music_subtree(os.path.join(audioset_dir, "ontology.json"), dict(zip(classes["mid"], names))),
        "genre10": GENRE10,
    }
    written = {}
    for v in vocabularies:
        vocab = vocab_lists[v]
        keep = set(vocab)
        labels = base["label_names"].map(lambda ls: [n for n in ls if n in keep])
        mask = labels.map(len) == 1 if v == "genre10" else labels.map(len) >= 1
        df = base[mask].copy()
        df["labels"] = labels[mask].map(lambda ls: dataset.SEPARATOR.join(ls))
        df["split"] = split_by_group(df["video_id"].tolist(), valid_fraction=valid_fraction, seed=seed)
        if v == "genre10":
            df["fold"] = fold_by_group(df["video_id"].to_numpy(), df["labels"].to_numpy(), n_folds=n_folds, seed=seed)
        df = df.drop(columns=["label_names"])
        if df.empty:
            raise DataError(f"vocabulary {v!r} keeps no segments")
        write_vocabulary(vocab, os.path.join(out_dir, f"vocab_{v}.json"))
        written[v] = dataset.write_index(df, os.path.join(out_dir, f"index_{v}.csv"))
    return written
