"""Your own labelled audio -> track index + cache: ``tagger prepare folder AUDIO --labels labels.csv``.

Labels come from a table (``path,labels``, tags joined by ``|``, as in a
track index; paths relative to the labels file's folder, to AUDIO, or
absolute; an optional group column such as ``artist``) or from the layout
(``--layout genre``: ``AUDIO/<genre>/<clip>``). Track ids are the files'
paths relative to the working folder (or ``root``), as ``tagger embed``
makes them, so a cache that ``tagger embed`` filled is reused, not
recomputed. The split (train / valid / test) and five folds are seeded and,
given a group column, grouped, so one artist's clips never sit on both
sides; folds are stratified by each clip's first label.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pandas as pd

from ..embedding import files
from ..exceptions import DataError, ParameterError
from ..records import write_json_atomic
from ..tables import read_table
from ..training import dataset
from .common import embed_dataset, fold_by_group, write_vocabulary

__all__ = ["prepare", "read_labels", "LAYOUTS"]

log = logging.getLogger(__name__)
LAYOUTS = ("table", "genre")
TASKS = ("auto", "multilabel", "singlelabel")


def read_labels(path: str, audio_dir: str, *, group: str | None = None) -> dict[str, tuple[str, Any, str]]:
    """The labels table as ``{absolute path: (labels, group)}``.

    Raises
    ------
    DataError
        Missing file or columns (named), an empty labels cell, a path given twice.
    """
    df = read_table(path, what="labels file", dtype=str, keep_default_na=False)
    needed = ["path", "labels"] + ([group] if group else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"{path}: the labels file lacks the columns {missing} (it has {list(df.columns)})")
    if group:
        empty = [i for i, cell in enumerate(df[group]) if not str(cell).strip()]
        if empty:
            raise DataError(
                f"{path}: {len(empty)} clips have an empty {group!r} cell (first: line {empty[0] + 2},"
                f" {df['path'].iloc[empty[0]]}); give each clip its group, or leave out --group"
            )
    base = os.path.dirname(os.path.abspath(path))
    out = {}
    for i, row in df.iterrows():
        given = row["path"]
        candidates = [given] if os.path.isabs(given) else [os.path.join(base, given), os.path.join(audio_dir, given)]
        resolved = next((os.path.abspath(c) for c in candidates if os.path.exists(c)), os.path.abspath(candidates[-1]))
        if resolved in out:
            raise DataError(f"{path}: line {i + 2}: {given} is labelled twice")
        out[resolved] = (row["labels"].strip(), row[group] if group else None, given)
    return out


def prepare(
    audio_dir: str,
    out_dir: str,
    *,
    labels: str | None = None,
    layout: str = "table",
    group: str | None = None,
    task: str = "auto",
    valid: float = 0.15,
    test: float = 0.15,
    n_folds: int = 5,
    seed: int = 0,
    root: str | None = None,
    extractor: Any = None,
    augment: int = 0,
    workers: int | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Write ``index.csv`` (with ``split`` and ``fold``), ``vocab.json`` and ``task.json``; embed into ``out_dir/cache``.

    Parameters
    ----------
    audio_dir : str
    out_dir : str
    labels : str, optional
        ``path,labels[,group]`` table; required unless ``layout='genre'``.
    layout : {'table', 'genre'}
    group : str, optional
        Column of the labels table that groups clips (artist, album, session).
    task : {'auto', 'multilabel', 'singlelabel'}
        ``auto``: multi-label when any clip has more than one label.
    valid, test : float
        Shares of groups (or clips) held out.
    n_folds : int
        Folds for ``data.cv_folds`` (fewer when a label has fewer clips).
    root : str, optional
        Folder track ids are relative to (default: the working folder), as ``tagger embed --root``.
    extractor : optional
        Embedder, FeatureExtractor or PatchExtractor; None writes the index only.

    Returns
    -------
    dict
        index path, task, embedded and skipped (already in the cache) counts, and the clips left out with the reason: ``unlabelled``
        (audio without a label), ``missing`` (labels without audio), ``failed``
        (audio that could not be decoded, with the error).
    """
    if layout not in LAYOUTS:
        raise ParameterError(f"layout={layout!r} must be one of {LAYOUTS}")
    if task not in TASKS:
        raise ParameterError(f"task={task!r} must be one of {TASKS}")
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise ParameterError(f"valid={valid!r} and test={test!r} must be shares in [0, 1) that leave training clips")
    if not os.path.isdir(audio_dir):
        raise DataError(f"{audio_dir}: no such folder")
    found = files.collect([audio_dir], root=root)
    if layout == "genre":
        if labels is not None or group is not None:
            raise ParameterError("--layout genre takes the labels from the folders: no --labels or --group")
        table = {
            os.path.abspath(p): (os.path.basename(os.path.dirname(p)), None, p)
            for p, _ in found
            if os.path.dirname(os.path.abspath(p)) != os.path.abspath(audio_dir)
        }
    else:
        if labels is None:
            raise ParameterError("tagger prepare folder needs --labels labels.csv (path,labels), or --layout genre")
        table = read_labels(labels, audio_dir, group=group)
    rows, unlabelled = [], []
    for path, track_id in found:
        entry = table.get(os.path.abspath(path))
        if entry is None or not entry[0]:
            unlabelled.append(path)
            continue
        names = [t.strip() for t in entry[0].split(dataset.SEPARATOR) if t.strip()]
        rows.append(
            {
                "track_id": track_id,
                "path": path,
                "labels": dataset.SEPARATOR.join(names),
                "duration": None,
                "group": entry[1] if group else track_id,
            }
        )
    present = {os.path.abspath(p) for p, _ in found}
    missing = sorted(v[2] for k, v in table.items() if k not in present)
    for path in unlabelled:
        log.warning("%s: no label; left out", path)
    for path in missing:
        log.warning("%s: labelled but not found; left out", path)
    if not rows:
        raise DataError(f"{audio_dir}: no labelled audio found ({len(found)} files, {len(table)} labels)")
    df = pd.DataFrame(rows)
    multi = df["labels"].str.contains(dataset.SEPARATOR, regex=False).any()
    if task == "auto":
        task = "multilabel" if multi else "singlelabel"
    elif task == "singlelabel" and multi:
        first = df[df["labels"].str.contains(dataset.SEPARATOR, regex=False)].iloc[0]
        raise DataError(f"task singlelabel, but {first['path']} has several labels ({first['labels']})")
    df["split"] = _split(df["group"].tolist(), valid=valid, test=test, seed=seed)
    first_label = df["labels"].str.split(dataset.SEPARATOR, regex=False).str[0]
    folds = min(n_folds, int(first_label.value_counts().min()), df["group"].nunique())
    fold_note = None
    if folds < n_folds:
        fold_note = (
            f"{max(folds, 0) if folds >= 2 else 'no'} folds instead of the {n_folds} asked: the rarest label has"
            f" {int(first_label.value_counts().min())} clips and there are {df['group'].nunique()} groups"
        )
        log.warning("%s", fold_note)
    if folds >= 2:
        df["fold"] = fold_by_group(df["group"].tolist(), first_label.tolist(), n_folds=folds, seed=seed)
    counts = pd.Series([t for s in df["labels"] for t in s.split(dataset.SEPARATOR)]).value_counts()
    vocabulary = sorted(counts.index, key=lambda t: (-counts[t], t))
    os.makedirs(out_dir, exist_ok=True)
    write_vocabulary(vocabulary, os.path.join(out_dir, "vocab.json"))
    failed, counts = [], {"embedded": 0, "skipped": 0}
    if extractor is not None:
        df, summary = embed_dataset(
            df,
            os.path.join(out_dir, "cache"),
            extractor=extractor,
            augment=augment,
            workers=workers,
            progress=progress,
            summary=True,
        )
        failed = summary["failures"]
        counts = {"embedded": summary["embedded"], "skipped": summary["skipped"]}
        bad = {os.fspath(p) for p, _ in failed}
        if bad:  # no cache entry: out of the index, with its copies (the reasons are in cache/errors.tsv)
            df = df[~df["path"].isin(bad)]
    elif augment:
        raise ParameterError("augment needs the clips embedded: drop --no-embed")
    df = df.rename(columns={"group": group}) if group else df.drop(columns=["group"])  # the grouping, by its own name
    index = dataset.write_index(df, os.path.join(out_dir, "index.csv"))
    write_json_atomic({"task": task}, os.path.join(out_dir, "task.json"))
    originals = len(dataset.originals(df))
    return {
        "index": index,
        "task": task,
        "n_clips": int(originals),
        "unlabelled": unlabelled,
        "missing": missing,
        "failed": failed,
        "vocabulary": vocabulary,
        "folds": folds if folds >= 2 else 0,
        "fold_note": fold_note,
        **counts,
    }


def _split(groups: list[Any], *, valid: float, test: float, seed: int) -> list[str]:
    """Seeded train / valid / test per item, whole groups on one side."""
    unique = np.array(sorted(set(groups)))
    order = np.random.default_rng(seed).permutation(unique)
    n_test, n_valid = int(round(test * len(unique))), int(round(valid * len(unique)))
    if len(unique) >= 3:  # each held-out part gets at least one group when asked for
        n_test, n_valid = max(n_test, 1 if test else 0), max(n_valid, 1 if valid else 0)
    side = {g: "test" for g in order[:n_test]}
    side.update({g: "valid" for g in order[n_test : n_test + n_valid]})
    return [side.get(g, "train") for g in groups]
