"""VGGish embeddings: arrays first (:func:`embed`), files next (:func:`embed_files`).

>>> emb = Embedder(weights="/path/to/vggish_model.ckpt")
>>> e, t = emb.embed(y, sr)                      # (T, 128) float32, (T,) seconds
>>> embed_files(["music/"], "cache/", embedder=emb)  # one pickle per track
"""

import csv
import logging
import os

import numpy as np

from . import cache, files, params
from .exceptions import DataError, ParameterError
from .frontend import waveform_to_patches
from .pipeline import iter_embeddings

__all__ = ["Embedder", "embed", "embed_files", "embed_items", "EmbedSummary"]

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16")


class Embedder:
    """VGGish loaded once, run on fixed-size batches of patches.

    Parameters
    ----------
    weights : str, optional
        SavedModel folder, TF-slim checkpoint or TF Hub handle
        (default ``$TAGGER_VGGISH_WEIGHTS``, else the TF Hub model).
    batch_size : int
        Patches per network call; partial batches are zero-padded so the
        network always sees one shape.
    hop_seconds : float
        Patch hop (0.96 s default, 0.48 s for 50 % overlap).
    short_policy : {'pad', 'skip'}
        Clips shorter than 0.96 s.
    postprocess : bool
        PCA-whiten and quantise to uint8 with the official parameters.
    pca_params : str, optional
        ``vggish_pca_params.npz`` (default ``$TAGGER_VGGISH_PCA``).
    dtype : {'float32', 'bfloat16'}
        Compute type of the network; embeddings are returned as float32.
    model : keras.Model, optional
        An already built VGGish (``weights`` is then ignored); give ``weights_id`` too.
    weights_id : str, optional
    """

    def __init__(
        self,
        weights=None,
        *,
        batch_size=64,
        hop_seconds=params.EXAMPLE_HOP_SECONDS,
        short_policy="pad",
        postprocess=False,
        pca_params=None,
        dtype="float32",
        model=None,
        weights_id=None,
    ):
        import tensorflow as tf

        from .vggish import Postprocessor, load_vggish

        if batch_size < 1:
            raise ParameterError(f"batch_size={batch_size} must be >= 1")
        if dtype not in DTYPES:
            raise ParameterError(f"dtype={dtype!r} must be one of {DTYPES}")
        self.frontend = params.frontend_params(hop_seconds=hop_seconds)
        self.hop_seconds = hop_seconds
        self.short_policy = short_policy
        self.batch_size = int(batch_size)
        if model is None:
            model, weights_id = load_vggish(weights)
        self.model = model
        self.postprocessor = Postprocessor(pca_params) if postprocess else None
        ident = weights_id or "unknown"
        if self.postprocessor is not None:
            ident += "+pca"
        if dtype != "float32":
            ident += "+" + dtype
        self.weights_id = ident
        if dtype != "float32":
            from .vggish import build_vggish

            low = build_vggish(name=f"vggish_{dtype}", dtype=dtype)
            low.set_weights(model.get_weights())
            net = low
        else:
            net = model
        spec = tf.TensorSpec([self.batch_size, params.NUM_FRAMES, params.NUM_BANDS], tf.float32)

        @tf.function(input_signature=[spec])
        def forward(x):
            return tf.cast(net(x, training=False), tf.float32)

        self._forward = forward

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
            outs.append(self._forward(chunk).numpy()[:n])
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

    def iter_files(self, paths, *, workers=None):
        """Embed files in parallel; yield :class:`tagger.pipeline.TrackResult` in input order.

        Embeddings in the results are already postprocessed when enabled.
        """
        for result in iter_embeddings(
            paths,
            self.run,
            batch_size=self.batch_size,
            hop_seconds=self.hop_seconds,
            short_policy=self.short_policy,
            workers=workers,
        ):
            if result.ok:
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


def embed_files(inputs, cache_dir, *, embedder, include=(), exclude=(), **options):
    """Embed audio files into the cache, one entry per track (track id: path relative to its input).

    Parameters
    ----------
    inputs : sequence of str
        Files, folders, list files (see :func:`tagger.files.collect`).
    cache_dir : str
    embedder : Embedder
    include, exclude : sequence of str
        Glob filters.
    **options
        ``overwrite``, ``workers``, ``errors_file``, ``progress``: see :func:`embed_items`.

    Returns
    -------
    EmbedSummary
    """
    items = files.collect(inputs, include=include, exclude=exclude)
    if not items:
        raise DataError(f"no audio files found in {[os.fspath(i) for i in inputs]}")
    return embed_items(items, cache_dir, embedder=embedder, **options)


def embed_items(items, cache_dir, *, embedder, overwrite=False, workers=None, errors_file=None, progress=None):
    """Embed ``(path, track_id)`` pairs into the cache.

    Finished entries are skipped unless ``overwrite``; stale ones (other
    frontend or weights) stop the run before any work, unless ``overwrite``.
    Each entry is written atomically as soon as its track is done, so a
    killed run loses nothing finished. Failures are listed, with reasons,
    in ``errors_file`` (default ``<cache_dir>/errors.tsv``).

    Parameters
    ----------
    items : sequence of (str, str)
    cache_dir : str
    embedder : Embedder
    overwrite : bool
    workers : int, optional
        Decode processes (see :func:`tagger.pipeline.iter_embeddings`).
    errors_file : str, optional
    progress : bool, optional
        Show a progress bar (default: when stderr is a terminal).

    Returns
    -------
    EmbedSummary
    """
    from tqdm.auto import tqdm

    todo = []
    for path, track_id in items:
        entry_file = cache.entry_path(cache_dir, track_id)
        if os.path.exists(entry_file) and not overwrite:
            try:
                cache.read_entry(entry_file, frontend=embedder.frontend, weights=embedder.weights_id)
                continue
            except DataError as exc:
                raise DataError(f"{exc} (pass overwrite=True / --overwrite to replace it)") from exc
        todo.append((path, track_id))
    summary = EmbedSummary(total=len(items), embedded=0, skipped=len(items) - len(todo), failed=0, failures=[])
    errors_file = errors_file or os.path.join(os.fspath(cache_dir), "errors.tsv")
    os.makedirs(os.fspath(cache_dir), exist_ok=True)
    bar = tqdm(total=len(todo), unit="clip", desc="embed", disable=(not progress) if progress is not None else None)
    try:
        for result in embedder.iter_files([p for p, _ in todo], workers=workers):
            track_id = todo[result.index][1]
            for text in result.warnings:
                log.warning(text)
            if result.ok:
                entry = cache.make_entry(
                    result.embedding,
                    result.timestamps,
                    frontend=embedder.frontend,
                    weights=embedder.weights_id,
                    source=result.path,
                    duration=result.duration,
                )
                cache.write_entry(cache_dir, track_id, entry)
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
    """Write ``path<TAB>reason`` rows (with a header); remove a stale file when there are none."""
    if not failures:
        if os.path.exists(path):
            os.unlink(path)
        return
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["path", "error"])
        writer.writerows(failures)
