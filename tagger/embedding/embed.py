"""Files into the cache with any model's extractor (:func:`embed_files`), and the compute-precision rule.

>>> from tagger.embedding import extractor
>>> emb = extractor.make("raw", weights="/path/to/vggish_model.ckpt")   # VGGish (the default model)
>>> embed_files(["music/"], "cache/", extractor=emb)                    # one pickle per track

An extractor's arrays come first (VGGish's is :class:`tagger.embedding.vggish.extractor.Embedder`); this module
files them, one cache entry per track, resumable.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable

import numpy as np

from .. import backend, locks
from ..console import progress_bar
from ..exceptions import DataError, ParameterError
from ..records import ErrorsWriter
from . import cache, files, params, provenance
from .extractor import Deferred, Planned

__all__ = ["embed_files", "embed_items", "plan", "EmbedSummary", "default_dtype", "resolve_dtype", "guard_difference"]

log = logging.getLogger(__name__)

DTYPES = params.PRECISIONS
# float16 (mixed precision) against float32 on the same patches: the largest |difference| / max |float32|
# was 0.1 % with the fixture weights on GTZAN clips (tests/test_embed.py checks this bound); about the
# 8-bit step of postprocessed embeddings (4 / 255 of a [-2, 2] range, 0.4 % of it)
FLOAT16_TOLERANCE = 0.01


def default_dtype() -> str:
    """The precision an unset ``dtype`` / ``--precision`` means: ``$TAGGER_PRECISION``, else ``'auto'``."""
    value = os.environ.get(params.PRECISION_ENV) or "auto"
    if value not in DTYPES:
        raise ParameterError(f"{params.PRECISION_ENV}={value!r} must be one of {', '.join(DTYPES)}")
    return value


def resolve_dtype(dtype: str | None) -> str:
    """The precision to compute in: ``None`` -> :func:`default_dtype`; ``'auto'`` -> :func:`tagger.backend.auto_dtype`
    (bfloat16 or float16 on a GPU; bfloat16 on a CPU with AMX or AVX512_BF16 under TensorFlow; else float32)."""
    if dtype is None:
        dtype = default_dtype()
    if dtype not in DTYPES:
        raise ParameterError(f"dtype={dtype!r} must be one of {DTYPES}")
    return backend.auto_dtype() if dtype == "auto" else dtype


def guard_difference(low: np.ndarray, reference: np.ndarray) -> float:
    """The precision guard's metric: ``max |low - reference| / max |reference|`` (inf where ``low`` is not finite)."""
    low, reference = np.asarray(low, np.float64), np.asarray(reference, np.float64)
    if not np.all(np.isfinite(low)):
        return float("inf")
    return float(np.abs(low - reference).max() / max(np.abs(reference).max(), 1e-12))


class EmbedSummary(dict):
    """Counts of an :func:`embed_files` run: total, embedded, skipped, failed; ``failures`` list."""

    @property
    def ok(self) -> bool:
        return self["failed"] == 0


def embed_files(
    inputs: Iterable[str] | str,
    cache_dir: str,
    *,
    extractor: Any,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    root: str | None = None,
    **options: Any,
) -> EmbedSummary:
    """Embed audio files into the cache, one entry per track (track id: path relative to ``root``).

    Parameters
    ----------
    inputs : sequence of str
        Files, folders, list files (see :func:`tagger.embedding.files.collect`).
    cache_dir : str
    extractor : tagger.embedding.extractor.Extractor or tagger.embedding.extractor.Deferred
    include, exclude : sequence of str
        Glob filters.
    root : str, optional
        Folder the track ids are relative to (default: the working folder; see
        :func:`tagger.embedding.files.track_id_for`).
    **options
        ``overwrite``, ``workers``, ``errors_file``, ``progress``: see :func:`embed_items`.

    Returns
    -------
    EmbedSummary

    Examples
    --------
    A folder of clips into a cache, then again: the second run finds every entry done (``CLIPS``: a folder of
    two clips; ``CACHE``: the cache folder; ``WEIGHTS``: the path of VGGish's weights):

    >>> from tagger.embedding import extractor
    >>> vggish = extractor.make("raw", weights=WEIGHTS, dtype="float32")
    >>> first = embed_files([CLIPS], CACHE, extractor=vggish, workers=0, progress=False)
    >>> first["embedded"], first["failed"]
    (2, 0)
    >>> again = embed_files([CLIPS], CACHE, extractor=vggish, workers=0, progress=False)
    >>> again["embedded"], again["skipped"]
    (0, 2)
    """
    items = files.collect(inputs, include=include, exclude=exclude, root=root, required=True)
    return embed_items(items, cache_dir, extractor=extractor, **options)


def plan(items: list[tuple[str, str]], view: Any) -> tuple[list[tuple[str, str, Any]], int]:
    """Split items into those to embed and those whose entry already serves, by the cache policy's verdicts.

    Entries the policy keeps (other settings, an older format) stop the run
    before any work: they are someone else's, and this command's only product
    is the entry.

    Returns
    -------
    todo : list of (path, track_id, fingerprint)
    n_done : int
    """
    todo, n_done, kept, replaced = [], 0, [], []
    for path, track_id in items:
        print_ = files.fingerprint(path)
        verdict = view.judge(track_id, print_)
        if verdict.action == "use":
            n_done += 1
        elif verdict.action == "keep":
            kept.append(verdict.message)
        else:
            if verdict.action == "replace" and verdict.message:
                replaced.append(verdict.message)
            todo.append((path, track_id, print_))
    if kept:
        more = f" (and {len(kept) - 1} more)" if len(kept) > 1 else ""
        raise DataError(
            f"{kept[0]}{more}; pass overwrite=True / --overwrite to replace them, or use another cache folder"
        )
    if replaced:
        log.warning("%d cache entries are re-embedded (first: %s)", len(replaced), replaced[0])
    return todo, n_done


def embed_items(
    items: list[tuple[str, str]],
    cache_dir: str,
    *,
    extractor: Any,
    overwrite: bool = False,
    workers: int | None = None,
    errors_file: str | None = None,
    progress: bool | None = None,
) -> EmbedSummary:
    """Embed ``(path, track_id)`` pairs into the cache.

    Entries that already serve (same frontend and network, same audio, and
    raw or postprocessed as asked; a raw entry serves a postprocessed run)
    are skipped unless ``overwrite``. Entries whose audio changed are
    re-embedded with a warning; entries made with other settings, or in an
    older cache format, stop the run before any work, unless ``overwrite``.
    Each entry is written atomically as soon as its track is done, so a
    killed run loses nothing finished. The cache is locked for the run (one
    writer per cache). Failures are listed, with reasons, in ``errors_file``
    (default ``<cache_dir>/errors.tsv``).

    Parameters
    ----------
    items : sequence of (str, str)
    cache_dir : str
    extractor : tagger.embedding.extractor.Extractor or tagger.embedding.extractor.Deferred
        A :class:`~tagger.embedding.extractor.Deferred` one is made only where an item needs it: a run whose
        every item the cache serves under its planned record embeds nothing and loads no network.
    overwrite : bool
    workers : int, optional
        Decode processes (see :func:`tagger.embedding.pipeline.iter_embeddings`).
    errors_file : str, optional
    progress : bool, optional
        Show a progress bar (default: when stderr is a terminal).

    Returns
    -------
    EmbedSummary

    Raises
    ------
    DataError
        Stale entries (see above); another process writing this cache; a
        read-only cache that would have to be written.
    """
    cache_dir = os.fspath(cache_dir)
    errors_file = errors_file or os.path.join(cache_dir, "errors.tsv")
    if isinstance(extractor, Deferred):
        if extractor.planned is not None and not overwrite and not extractor.made:
            done = _served(items, cache_dir, extractor.planned, errors_file)
            if done is not None:
                return done
        extractor = extractor.get()
    extractor.settle([p for p, _ in items])  # the precision is fixed before the provenance is recorded
    view = cache.CacheView(cache_dir, provenance.of_extractor(extractor), overwrite=overwrite)
    if not view.writable:
        todo, n_done = plan(items, view)
        if todo:
            raise DataError(
                f"cache {cache_dir} is read-only: {len(todo)} of {len(items)} tracks would have to be"
                " embedded into it; use a cache folder you can write, or ask its owner"
            )
        return EmbedSummary(
            total=len(items), embedded=0, skipped=n_done, failed=0, failures=[], errors_file=errors_file
        )
    with locks.exclusive(locks.folder_lock_path(cache_dir), what=f"cache {cache_dir}"):
        todo, n_done = plan(items, view)
        summary = EmbedSummary(total=len(items), embedded=0, skipped=n_done, failed=0, failures=[])
        bar = progress_bar(len(todo), desc="embed", progress=progress)
        try:
            for result in extractor.iter_files([p for p, _, _ in todo], workers=workers):
                _, track_id, print_ = todo[result.index]
                for text in result.warnings:
                    log.warning(text)
                if result.ok:
                    entry = cache.make_entry(
                        result.embedding,
                        result.timestamps,
                        kind=extractor.kind,
                        pca=extractor.pca_id,
                        frontend=extractor.frontend,
                        weights=extractor.network_id,
                        source=result.path,
                        fingerprint=print_,
                        duration=result.duration,
                        short_policy=extractor.short_policy,
                    )
                    view.store(track_id, entry)
                    summary["embedded"] += 1
                else:
                    log.error("%s: %s", result.path, result.error)
                    summary["failed"] += 1
                    summary["failures"].append((result.path, result.error))
                bar.update(1)
                bar.set_postfix(failed=summary["failed"], refresh=False)
        finally:
            bar.close()
            _write_errors(errors_file, summary["failures"])
    summary["errors_file"] = errors_file
    return summary


def _served(items: list[tuple[str, str]], cache_dir: str, planned: Planned, errors_file: str) -> EmbedSummary | None:
    """The summary of a run whose every item the cache serves under the planned record (nothing to embed: the
    extractor is never made), or None where any item would need it. As a run that embeds nothing, it clears a
    stale errors file, under the cache's lock."""
    view = cache.CacheView(cache_dir, provenance.of_extractor(planned))
    if not view.holds_all(items):
        return None
    if view.writable:
        with locks.exclusive(locks.folder_lock_path(cache_dir), what=f"cache {cache_dir}"):
            _write_errors(errors_file, [])
    return EmbedSummary(
        total=len(items), embedded=0, skipped=len(items), failed=0, failures=[], errors_file=errors_file
    )


def _write_errors(path: str, failures: list[tuple[str, str]]) -> None:
    """Write the failures as an errors file (quoted TSV); remove a stale file when there are none."""
    if not failures:
        if os.path.exists(path):
            os.unlink(path)
        return
    if os.path.exists(path):
        os.unlink(path)
    with ErrorsWriter(path) as writer:
        for failure in failures:
            writer.write(*failure)
