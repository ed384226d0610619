"""``tagger tag`` into a file: rows appended as clips finish, resumable, refused on a settings change."""

import csv
import json
import os

import numpy as np

from .. import locks
from ..embedding import files
from ..exceptions import ParameterError
from ..records import ErrorsWriter, progress_bar, resume_output

__all__ = ["tag_to_file", "FORMATS", "output_settings", "row_fields"]

FORMATS = ("csv", "jsonl")


def row_fields(top_n):
    """Columns of a tag row (CSV and Parquet): path, duration, tag_i and p_i for the top ``top_n``, tags."""
    return ["path", "duration"] + [f"{k}_{i}" for i in range(1, top_n + 1) for k in ("tag", "p")] + ["tags"]


def output_settings(head, embedder, *, fmt, top_n, threshold, taggram):
    """What a tag output's rows depend on (recorded in ``OUT.meta.json``; a rerun must match it).

    Parameters
    ----------
    head : Head
        The model (a :class:`Tagger` is one).
    embedder : tagger.embedding.embed.Embedder
        The network and frontend that make its embeddings.

    Returns
    -------
    dict
        model (name and content hash), weights (VGGish weights, postprocessing
        and precision), frontend (hop included), short-clip policy, format,
        top_n (CSV), threshold and whether taggrams are written.
    """
    return {
        "model": {"name": head.name, "hash": head.model_hash, "task": head.task},
        "weights": embedder.weights_id,
        "frontend": embedder.frontend,
        "short_policy": embedder.short_policy,
        "format": fmt,
        "top_n": None if fmt == "jsonl" else top_n,  # JSONL holds every probability
        "threshold": threshold,
        "taggram": bool(taggram),
    }


def tag_to_file(
    tagger,
    inputs,
    out,
    *,
    fmt="csv",
    top_n=5,
    threshold=None,
    taggram_dir=None,
    errors_file=None,
    include=(),
    exclude=(),
    workers=None,
    progress=None,
    overwrite=False,
    root=None,
):
    """Tag inputs into ``out``, incrementally and resumably.

    Rows are appended (and flushed) as clips finish, in input order. The
    settings the rows depend on (:func:`output_settings`) are recorded in
    ``OUT.meta.json``; a rerun with the same settings skips clips already in
    ``out`` or in the errors file (both read with their parsers; a record cut
    off by a kill is dropped) and ends with the same files as an
    uninterrupted run, while a rerun with other settings is refused unless
    ``overwrite``. One process at a time writes an output (lock ``OUT.lock``).

    Parameters
    ----------
    overwrite : bool
        Start ``out`` and its errors file afresh.
    root : str, optional
        Folder the cache track ids are relative to (default: the working folder).

    Returns
    -------
    dict
        total, tagged, skipped (done before), failed, errors_file.
    """
    if fmt not in FORMATS:
        raise ParameterError(f"format={fmt!r} must be one of {FORMATS}")
    if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1:
        raise ParameterError(f"top_n={top_n!r} must be a positive integer")
    if threshold is not None and not 0 <= threshold <= 1:
        raise ParameterError(f"threshold={threshold!r} must be in [0, 1]")
    items = files.collect(inputs, include=include, exclude=exclude, root=root, required=True)
    out = os.fspath(out)
    errors_file = errors_file or out + ".errors.tsv"
    meta_path = out + ".meta.json"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    settings = output_settings(tagger, tagger.embedder, fmt=fmt, top_n=top_n, threshold=threshold, taggram=taggram_dir)
    with locks.exclusive(locks.output_lock_path(out), what=f"output {out}"):
        if overwrite:
            for path in (out, errors_file, meta_path):
                if os.path.exists(path):
                    os.unlink(path)
        fieldnames = row_fields(top_n)
        header, done, failures = resume_output(
            out, errors_file, meta_path, settings, kind=fmt, fieldnames=fieldnames if fmt == "csv" else None
        )
        todo = [(p, t) for p, t in items if p not in done]
        summary = {
            "total": len(items),
            "tagged": 0,
            "skipped": len(items) - len(todo),
            "failed": len(failures),
            "errors_file": errors_file,
        }
        bar = progress_bar(len(todo), desc="tag", progress=progress)
        with open(out, "a", newline="", encoding="utf-8") as fout, ErrorsWriter(errors_file) as ferr:
            writer = csv.DictWriter(fout, fieldnames=fieldnames, extrasaction="ignore")
            if fmt == "csv" and header is None:
                writer.writeheader()
            for r in tagger.iter_tag(todo, workers=workers, taggram=bool(taggram_dir)):
                if r.ok:
                    row = tagger.rows(r, top_n=top_n, threshold=threshold)
                    if fmt == "csv":
                        writer.writerow(row)
                    else:
                        fout.write(json.dumps(tagger.record(r, row)) + "\n")
                    if taggram_dir:
                        target = os.path.join(taggram_dir, (r.track_id or os.path.basename(r.path)) + ".npz")
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        np.savez_compressed(
                            target,
                            timestamps=r.timestamps,
                            taggram=r.taggram,
                            labels=np.array(tagger.labels),
                            probabilities=r.probabilities,
                        )
                    summary["tagged"] += 1
                else:
                    ferr.write(r.path, r.error)
                    summary["failed"] += 1
                fout.flush()
                bar.update(1)
                bar.set_postfix(failed=summary["failed"], refresh=False)
        bar.close()
        if summary["failed"] == 0 and os.path.exists(errors_file):
            os.unlink(errors_file)
    return summary
