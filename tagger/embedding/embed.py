"""VGGish embeddings: arrays first (:func:`embed`), files next (:func:`embed_files`).

>>> emb = Embedder(weights="/path/to/vggish_model.ckpt")
>>> e, t = emb.embed(y, sr)                      # (T, 128) float32, (T,) seconds
>>> embed_files(["music/"], "cache/", extractor=emb)  # one pickle per track
"""

import logging
import os

import numpy as np

from .. import backend, locks
from ..exceptions import DataError, ParameterError
from ..records import ErrorsWriter, progress_bar
from . import cache, files, params, provenance
from .frontend import waveform_to_patches
from .pipeline import default_workers, iter_embeddings, refuse_in_bootstrapping_child
from .postprocess import Postprocessor
from .vggish import build_vggish, load_vggish, resolve_source

__all__ = ["Embedder", "embed", "embed_files", "embed_items", "plan", "EmbedSummary"]

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16", "auto")
# float16 (mixed precision) against float32 on the same patches: the largest |difference| / max |float32|
# was 0.1 % with the fixture weights on GTZAN clips (tests/test_embed.py checks this bound); about the
# 8-bit step of postprocessed embeddings (4 / 255 of a [-2, 2] range, 0.4 % of it)
FLOAT16_TOLERANCE = 0.01


def resolve_dtype(dtype):
    """``'auto'``: :func:`tagger.backend.auto_dtype` (bfloat16 or float16 on a GPU, float32 on a CPU); others as given."""
    return backend.auto_dtype() if dtype == "auto" else dtype


class Embedder:
    """VGGish loaded once, run on fixed-size batches of patches.

    Parameters
    ----------
    weights : str, optional
        SavedModel folder, TF-slim checkpoint, TF Hub handle, or a plain
        ``.npz`` / ``.safetensors`` file (the only form that needs no TensorFlow)
        (default ``$TAGGER_VGGISH_WEIGHTS``, else the TF Hub model).
    batch_size : int, optional
        Patches per network call (default 64 on a CPU, 512 on a GPU); partial
        batches are zero-padded so the network always sees one shape.
    hop_seconds : float
        Patch hop (0.96 s default, 0.48 s for 50 % overlap).
    short_policy : {'pad', 'skip'}
        Clips shorter than 0.96 s.
    postprocess : bool
        PCA-whiten and quantise to uint8 with the official parameters.
    pca_params : str, optional
        ``vggish_pca_params.npz`` (default ``$TAGGER_VGGISH_PCA``).
    dtype : {'float32', 'bfloat16', 'float16', 'auto'}
        Compute precision of the network (``auto``: bfloat16 on a GPU with
        bfloat16 tensor cores, float16 on an older GPU, float32 on a CPU; on every
        Keras backend, :func:`tagger.backend.auto_dtype`); embeddings are returned as float32, and the precision is part
        of the network's id in cache entries.
    model : keras.Model, optional
        An already built VGGish (``weights`` is then ignored); give ``weights_id`` too.
    weights_id : str, optional
    """

    def __init__(
        self,
        weights=None,
        *,
        batch_size=None,
        hop_seconds=params.EXAMPLE_HOP_SECONDS,
        short_policy="pad",
        postprocess=False,
        pca_params=None,
        dtype="float32",
        model=None,
        weights_id=None,
    ):
        refuse_in_bootstrapping_child()  # before loading anything: see its docstring
        self.on_gpu = bool(backend.gpus())
        if batch_size is None:
            batch_size = 512 if self.on_gpu else 64  # a GPU needs big batches to be busy; a CPU gains nothing
        if batch_size < 1:
            raise ParameterError(f"batch_size={batch_size} must be >= 1")
        if dtype not in DTYPES:
            raise ParameterError(f"dtype={dtype!r} must be one of {DTYPES}")
        dtype = resolve_dtype(dtype)
        self.frontend = params.frontend_params(hop_seconds=hop_seconds)
        self.hop_seconds = hop_seconds
        self.dtype = dtype
        self.weights_source = None if model is not None else resolve_source(weights)  # what a Beam worker loads
        self.short_policy = short_policy
        self.batch_size = int(batch_size)
        if model is None:
            model, weights_id = load_vggish(weights)
        self.model = model
        self.postprocessor = Postprocessor(pca_params) if postprocess else None
        # the network (what cache entries record); the whole embedding is the provenance record
        self.network_id = (weights_id or "unknown") + ("" if dtype == "float32" else "+" + dtype)
        if dtype != "float32":
            low = build_vggish(name=f"vggish_{dtype}", dtype=dtype)
            low.set_weights(model.get_weights())
            net = low
        else:
            net = model
        # one fixed batch shape: traced (TensorFlow) or compiled (JAX) once
        self._forward = backend.inference(net, [(self.batch_size, params.NUM_FRAMES, params.NUM_BANDS)])

    def run(self, patches):
        """Raw embeddings of patches.

        Parameters
        ----------
        patches : np.ndarray, shape (n, 96, 64), float32

        Returns
        -------
        np.ndarray, shape (n, 128), float32
        """
        patches = np.asarray(patches, dtype=np.float32)
        outs = []
        for start in range(0, len(patches), self.batch_size):
            chunk = patches[start : start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - n,) + chunk.shape[1:], np.float32)])
            outs.append(self._forward(chunk)[:n])
        return np.concatenate(outs) if outs else np.zeros((0, params.EMBEDDING_SIZE), np.float32)

    def finalize(self, emb):
        """Apply the postprocessor when enabled: (T, 128) float32 -> uint8; else unchanged."""
        return self.postprocessor(emb) if self.postprocessor is not None else emb

    def embed(self, y, sr):
        """Embed a waveform.

        Parameters
        ----------
        y : np.ndarray, shape (n,) or (n, channels)
        sr : int
            Sample rate in Hz (resampled to 16 kHz when needed).

        Returns
        -------
        emb : np.ndarray, shape (T, 128), float32 (uint8 when postprocessing)
        timestamps : np.ndarray, shape (T,), float64
            Patch start times in seconds.
        """
        patches, times = waveform_to_patches(y, sr, hop_seconds=self.hop_seconds, short_policy=self.short_policy)
        return self.finalize(self.run(patches)), times

    @property
    def kind(self):
        """``'postprocessed'`` or ``'raw'``: what :meth:`embed` returns."""
        return "raw" if self.postprocessor is None else "postprocessed"

    @property
    def pca_id(self):
        """Id of the PCA parameters in use (None without postprocessing)."""
        return None if self.postprocessor is None else self.postprocessor.id

    def iter_files(self, paths, *, workers=None, raw=False):
        """Embed files in parallel; yield :class:`tagger.embedding.pipeline.TrackResult` in input order.

        Embeddings in the results are already postprocessed when enabled,
        unless ``raw`` (then they are the network's float32 output).
        """
        for result in iter_embeddings(
            paths,
            self.run,
            batch_size=self.batch_size,
            hop_seconds=self.hop_seconds,
            short_policy=self.short_policy,
            workers=default_workers(gpu=self.on_gpu) if workers is None else workers,
        ):
            if result.ok and not raw:
                result.embedding = self.finalize(result.embedding)
            yield result


def embed(y, sr, *, embedder=None, weights=None, **options):
    """Embed a waveform with VGGish (loads the network when no ``embedder`` is given).

    Parameters
    ----------
    y : np.ndarray, shape (n,) or (n, channels)
    sr : int
    embedder : Embedder, optional
    weights : str, optional
        Passed to :class:`Embedder` when it must be built.
    **options
        Other :class:`Embedder` settings.

    Returns
    -------
    emb : np.ndarray, shape (T, 128)
    timestamps : np.ndarray, shape (T,)
    """
    if embedder is None:
        embedder = Embedder(weights, **options)
    elif options:
        raise ParameterError(f"options {sorted(options)} conflict with the given embedder")
    return embedder.embed(y, sr)


class EmbedSummary(dict):
    """Counts of an :func:`embed_files` run: total, embedded, skipped, failed; ``failures`` list."""

    @property
    def ok(self):
        return self["failed"] == 0


def embed_files(inputs, cache_dir, *, extractor, include=(), exclude=(), root=None, **options):
    """Embed audio files into the cache, one entry per track (track id: path relative to ``root``).

    Parameters
    ----------
    inputs : sequence of str
        Files, folders, list files (see :func:`tagger.embedding.files.collect`).
    cache_dir : str
    extractor : tagger.embedding.extractor.Extractor
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
    """
    items = files.collect(inputs, include=include, exclude=exclude, root=root, required=True)
    return embed_items(items, cache_dir, extractor=extractor, **options)


def plan(items, view):
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


def embed_items(items, cache_dir, *, extractor, overwrite=False, workers=None, errors_file=None, progress=None):
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
    extractor : tagger.embedding.extractor.Extractor
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


def _write_errors(path, failures):
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
