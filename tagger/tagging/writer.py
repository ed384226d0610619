"""Tag outputs: how a clip's tags become a row (CSV, Parquet) or a record (JSONL), and ``tagger tag`` into a file.

Rows are appended as clips finish, resumably; a rerun with other settings is refused.
"""

import logging
import os

import numpy as np

from ..console import progress_bar
from ..embedding import files, provenance
from ..exceptions import ParameterError
from ..resumable import ResumableOutput
from ..training.dataset import SEPARATOR

log = logging.getLogger(__name__)

__all__ = [
    "tag_to_file",
    "FORMATS",
    "BEAM_FORMATS",
    "format_for",
    "output_settings",
    "check_options",
    "row_fields",
    "csv_row",
    "json_record",
]

#: what ``tagger tag`` writes itself; the Beam pipeline writes Parquet too
FORMATS = ("csv", "jsonl")
BEAM_FORMATS = FORMATS + ("parquet",)


def format_for(out, fmt=None):
    """The output format: ``fmt`` when given, else from ``out``'s extension (``.jsonl``/``.json``, ``.parquet``, CSV)."""
    if fmt is not None:
        return fmt
    out = str(out)
    return "jsonl" if out.endswith((".jsonl", ".json")) else "parquet" if out.endswith(".parquet") else "csv"


def row_fields(top_n):
    """Columns of a tag row (CSV and Parquet): path, duration, tag_i and p_i for the top ``top_n``, tags."""
    return ["path", "duration"] + [f"{k}_{i}" for i in range(1, top_n + 1) for k in ("tag", "p")] + ["tags"]


def csv_row(head, result, *, top_n=5, threshold=None):
    """A clip's tags as a flat row (:func:`row_fields`): path, duration, top-N tags with probabilities, chosen tags.

    Parameters
    ----------
    head : tagger.tagging.api.Head or tagger.tagging.api.Tagger
        Its labels, thresholds and task.
    result : tagger.tagging.results.TagResult
    top_n : int
    threshold : float, optional
        One threshold for every tag instead of the head's own (multi-label).
    """
    p = result.probabilities
    order = np.argsort(-p, kind="stable")[:top_n]
    row = {"path": result.path, "duration": round(float(result.duration), 3)}
    for k, j in enumerate(order, 1):
        row[f"tag_{k}"] = head.labels[j]
        row[f"p_{k}"] = round(float(p[j]), 4)
    if head.task == "singlelabel":
        chosen = [int(np.argmax(p))]
    else:
        cut = head.thresholds if threshold is None else np.full(len(p), threshold)
        chosen = [j for j in np.argsort(-p, kind="stable") if p[j] >= cut[j]]
    row["tags"] = SEPARATOR.join(head.labels[j] for j in chosen)
    return row


def json_record(head, result, row):
    """A clip's tags as one JSONL record: path, duration, every tag's probability, the chosen tags (from ``row``)."""
    return {
        "path": result.path,
        "duration": round(float(result.duration), 3),
        "probabilities": {t: round(float(p), 6) for t, p in zip(head.labels, result.probabilities)},
        "tags": row["tags"].split(SEPARATOR) if row["tags"] else [],
    }


def output_settings(head, extractor, *, fmt, top_n, threshold, taggram):
    """What a tag output's rows depend on (recorded in ``OUT.meta.json``; a rerun must match it).

    Parameters
    ----------
    head : tagger.tagging.api.Head or tagger.tagging.api.Tagger
        The model.
    extractor : tagger.embedding.extractor.Extractor
        What makes its inputs (the network, or the features or patches, and the frontend).

    Returns
    -------
    dict
        The embeddings' provenance record (weights, precision, PCA parameters,
        frontend, short-clip policy, kind; :mod:`tagger.embedding.provenance`),
        the model (name and content hash), format, top_n (CSV), threshold and
        whether taggrams are written.
    """
    return {
        **provenance.of_extractor(extractor),
        **option_settings(head, fmt=fmt, top_n=top_n, threshold=threshold, taggram=taggram),
    }


def option_settings(head, *, fmt, top_n, threshold, taggram):
    """The part of :func:`output_settings` known before any network loads: the model (name, content hash, task;
    ``head`` may be :func:`tagger.tagging.api.describe`'s) and the options."""
    return {
        "model": {"name": head.name, "hash": head.model_hash, "task": head.task},
        "format": fmt,
        "top_n": None if fmt == "jsonl" else top_n,  # JSONL holds every probability
        "threshold": threshold,
        "taggram": bool(taggram),
    }


def check_options(head, *, top_n, threshold):
    """Refuse options that cannot apply to this head; cap ``top_n`` at its vocabulary (with a note).

    Returns
    -------
    int
        The top-N to use.
    """
    if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1:
        raise ParameterError(f"top_n={top_n!r} must be a positive integer")
    if threshold is not None and not 0 <= threshold <= 1:
        raise ParameterError(f"threshold={threshold!r} must be in [0, 1]")
    if threshold is not None and head.task == "singlelabel":
        raise ParameterError(
            f"--threshold {threshold} does not apply: model {head.name!r} is single-label (each clip gets its most"
            " probable class); leave it out"
        )
    if top_n > len(head.labels):
        log.warning(
            "--top-n %d is more than the model's %d tags: capped at %d", top_n, len(head.labels), len(head.labels)
        )
        top_n = len(head.labels)
    return top_n


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
    """Tag inputs into ``out``, incrementally and resumably (:class:`tagger.resumable.ResumableOutput`).

    Rows are appended (and flushed) as clips finish, in input order. The
    settings the rows depend on (:func:`output_settings`) are recorded in
    ``OUT.meta.json``; a rerun with the same settings skips clips already in
    ``out`` or in the errors file (by track id, whatever path spelled them;
    a record cut off by a kill is dropped) and ends with the same files as
    an uninterrupted run, while a rerun with other settings is refused unless
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
    top_n = check_options(tagger, top_n=top_n, threshold=threshold)
    items = files.collect(inputs, include=include, exclude=exclude, root=root, required=True)
    options = dict(fmt=fmt, top_n=top_n, threshold=threshold, taggram=taggram_dir)

    def output_of(source):
        return ResumableOutput(
            out,
            kind=fmt,
            settings=output_settings(tagger, source, **options),
            compare=provenance.settings_differences,
            fieldnames=row_fields(top_n) if fmt == "csv" else None,
            errors_file=errors_file,
            overwrite=overwrite,
        )

    pending = items
    if tagger.planned is not None and not overwrite and os.path.exists(out + ".meta.json"):
        # a rerun: what is left, judged by the settings the network would record (neither it nor the head loads)
        try:
            with output_of(tagger.planned) as begun:
                pending = begun.pending(items)
                if not pending:
                    failed, errors = begun.failed, begun.errors_file
                    return {
                        "total": len(items),
                        "tagged": 0,
                        "skipped": len(items),
                        "failed": failed,
                        "errors_file": errors,
                    }
        except ParameterError:
            pending = items  # other settings as planned: the network's own record decides, below
    source = tagger.source_for(pending)  # the precision guard, before the settings record it
    output = output_of(source)
    with output:
        todo = output.pending(items)
        summary = {"total": len(items), "tagged": 0, "errors_file": output.errors_file}
        summary["skipped"] = len(items) - len(todo)
        bar = progress_bar(len(todo), desc="tag", progress=progress)
        try:
            for r in tagger.iter_tag(todo, workers=workers, taggram=bool(taggram_dir), source=source):
                if r.ok:
                    row = csv_row(tagger, r, top_n=top_n, threshold=threshold)
                    output.row(row if fmt == "csv" else json_record(tagger, r, row))
                    if taggram_dir:
                        _write_taggram(taggram_dir, tagger, r)
                    summary["tagged"] += 1
                else:
                    output.error(r.path, r.error)
                bar.update(1)
                bar.set_postfix(failed=output.failed, refresh=False)
        finally:
            bar.close()
        summary["failed"] = output.failed
    return summary


def _write_taggram(taggram_dir, tagger, r):
    target = os.path.join(taggram_dir, (r.track_id or os.path.basename(r.path)) + ".npz")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    np.savez_compressed(
        target,
        timestamps=r.timestamps,
        taggram=r.taggram,
        labels=np.array(tagger.labels),
        probabilities=r.probabilities,
        path=np.array(os.fspath(r.path)),  # what `tagger plot taggram` titles it with
        model=np.array(f"{tagger.head.name} ({tagger.model_hash})"),
    )
