"""The embedding cache: one pickle per track, written atomically, read safely.

Entry (a dict, ``<cache>/<track_id>.pkl``, format :data:`FORMAT`):

``format`` int; ``embedding`` np.ndarray (T, 128), float32 raw VGGish output
or uint8 postprocessed, or (1, 57) float32 handcrafted features, or (T, 96, 64)
float16 log-mel patches; ``kind`` ``'raw'``, ``'postprocessed'``, ``'features'`` or
``'melspec'`` (what ``embedding`` holds;
a features entry's ``frontend`` is :func:`tagger.embedding.params.feature_params` and
its ``weights`` the feature set); ``pca`` str or None, the PCA parameters' id of a
postprocessed entry; ``timestamps`` np.ndarray (T,), patch start times in
seconds; ``frontend`` dict, :func:`tagger.embedding.params.frontend_params`;
``weights`` str, the network that made it (weights hash and precision);
``source`` str, the audio path as given when it was embedded, or a record
id; ``fingerprint`` str or None, :func:`tagger.embedding.files.fingerprint` of
the audio; ``duration`` float, seconds (or None).

A raw entry serves heads that need postprocessed embeddings too: the
postprocessor is applied on read (:func:`embedding_for`), so ``tagger embed``
then ``tagger tag --cache`` runs the network once. Readers that know the
source check its fingerprint: an entry whose audio changed is stale
(:class:`StaleEntry`), never reused. Loading uses a restricted unpickler that
accepts NumPy arrays and builtins only, so a planted pickle cannot run code.
Files are created with the umask's permissions (a group-shared cache stays
readable by the group).
"""

import io
import os
import pickle

import numpy as np

from ..exceptions import DataError, ParameterError
from ..records import write_atomic
from . import params

__all__ = [
    "FORMAT",
    "KINDS",
    "StaleEntry",
    "entry_path",
    "make_entry",
    "write_entry",
    "read_entry",
    "loads_entry",
    "check_entry",
    "serves",
    "embedding_for",
    "safe_loads",
    "embedding_as_float",
    "writable",
]

FORMAT = 2
KINDS = ("raw", "postprocessed", "features", "melspec")
_KEYS = ("format", "embedding", "kind", "pca", "timestamps", "frontend", "weights", "source", "fingerprint", "duration")


class StaleEntry(DataError):
    """A cache entry that exists but cannot serve this reader.

    ``reason`` says why: ``'format'`` (an older cache format), ``'settings'``
    (other frontend settings or network) or ``'source'`` (its audio changed).
    """

    def __init__(self, message, reason):
        super().__init__(message)
        self.reason = reason


# (module, name) pairs a cache pickle may reference: NumPy array and dtype reconstruction only
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}
_ALLOWED_DTYPE_CLASSES = {
    "Float16DType",
    "Float32DType",
    "Float64DType",
    "UInt8DType",
    "Int64DType",
    "Int32DType",
    "BoolDType",
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED or (module == "numpy.dtypes" and name in _ALLOWED_DTYPE_CLASSES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a cache entry")


def safe_loads(data):
    """Unpickle bytes allowing only NumPy arrays and builtins.

    Raises
    ------
    pickle.UnpicklingError
        If the pickle references any other global.
    """
    return _RestrictedUnpickler(io.BytesIO(data)).load()


def entry_path(cache_dir, track_id):
    """Path of a track's entry: ``<cache_dir>/<track_id>.pkl`` (track ids may hold ``/``)."""
    track_id = str(track_id)
    if not track_id or track_id.startswith(("/", "\\")) or ".." in track_id.replace("\\", "/").split("/"):
        raise ParameterError(f"track_id={track_id!r} must be a non-empty relative name without '..'")
    return os.path.join(os.fspath(cache_dir), track_id + ".pkl")


def make_entry(embedding, timestamps, *, kind, frontend, weights, source, pca=None, fingerprint=None, duration=None):
    """Assemble a cache entry after checking shapes and types.

    Parameters
    ----------
    embedding : np.ndarray, shape (T, 128), float32 (raw) or uint8 (postprocessed); (1, D) for features
    timestamps : np.ndarray, shape (T,)
    kind : {'raw', 'postprocessed', 'features'}
    frontend : dict
    weights : str
        The network's id (weights and precision, without postprocessing).
    source : str
    pca : str, optional
        Id of the PCA parameters; required for postprocessed entries.
    fingerprint : str, optional
        :func:`tagger.embedding.files.fingerprint` of the source file.
    duration : float, optional

    Returns
    -------
    dict
    """
    if kind not in KINDS:
        raise ParameterError(f"kind={kind!r} must be one of {KINDS}")
    embedding = np.asarray(embedding)
    want = {"postprocessed": np.uint8, "melspec": np.float16}.get(kind, np.float32)
    if embedding.dtype != want:
        if kind == "postprocessed":
            raise DataError(f"{source}: a postprocessed embedding is uint8, got {embedding.dtype}")
        embedding = embedding.astype(want)
    if kind == "postprocessed" and not pca:
        raise DataError(f"{source}: a postprocessed entry needs the id of its PCA parameters")
    timestamps = np.asarray(timestamps, dtype=np.float64)
    size = params.EMBEDDING_SIZE
    shape = {"features": "(T>0, D>0)", "melspec": "(T>0, frames, bands)"}.get(kind, f"(T>0, {size})")
    ok = {"features": embedding.ndim == 2, "melspec": embedding.ndim == 3}.get(
        kind, embedding.ndim == 2 and embedding.shape[-1] == size
    )
    if not ok or len(embedding) == 0 or 0 in embedding.shape:
        raise DataError(f"{source}: embedding must have shape {shape}, got {embedding.shape}")
    if timestamps.shape != (len(embedding),):
        raise DataError(f"{source}: timestamps shape {timestamps.shape} does not match {len(embedding)} patches")
    return {
        "format": FORMAT,
        "embedding": embedding,
        "kind": kind,
        "pca": None if kind == "raw" else str(pca),
        "timestamps": timestamps,
        "frontend": dict(frontend),
        "weights": str(weights),
        "source": str(source),
        "fingerprint": None if fingerprint is None else str(fingerprint),
        "duration": None if duration is None else float(duration),
    }


def write_entry(cache_dir, track_id, entry):
    """Write an entry atomically (temporary file in the same folder, then rename).

    Returns
    -------
    str
        The entry's path.
    """
    path = entry_path(cache_dir, track_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return write_atomic(
        path, lambda f: pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL), binary=True, fsync=True
    )


def check_entry(entry, *, path="<entry>", frontend=None, weights=None, fingerprint=None):
    """Validate an entry's format and, when given, its frontend, network and source fingerprint.

    Raises
    ------
    DataError
        Not a cache entry at all.
    StaleEntry
        Naming the entry and the first mismatch; ``reason`` says which kind.
    """
    if isinstance(entry, dict) and entry.get("format") != FORMAT and "embedding" in entry:
        raise StaleEntry(
            f"{path}: cache format {entry.get('format')!r}, this tagger reads {FORMAT} (format 1 entries were keyed by"
            " their path below each input folder and never checked against their audio); rebuild the cache: rerun the same"
            " `tagger embed` (or `tagger prepare`) with --overwrite, or use a new cache folder",
            "format",
        )
    if not isinstance(entry, dict) or any(k not in entry for k in _KEYS):
        raise DataError(
            f"{path}: not a tagger cache entry (keys {sorted(entry) if isinstance(entry, dict) else type(entry)})"
        )
    if frontend is not None and entry["frontend"] != dict(frontend):
        diff = {k: (entry["frontend"].get(k), v) for k, v in frontend.items() if entry["frontend"].get(k) != v}
        raise StaleEntry(f"{path}: made with other frontend settings (cached, wanted): {diff}", "settings")
    if weights is not None and entry["weights"] != weights:
        raise StaleEntry(f"{path}: made by the network {entry['weights']}, wanted {weights}", "settings")
    if fingerprint is not None and entry["fingerprint"] != fingerprint:
        raise StaleEntry(
            f"{path}: its source {entry['source']} changed since it was embedded"
            f" (fingerprint {entry['fingerprint']}, now {fingerprint})",
            "source",
        )
    return entry


def serves(entry, kind, pca=None):
    """Whether an entry can give embeddings of ``kind`` (raw entries serve postprocessed readers too).

    Parameters
    ----------
    entry : dict
    kind : {'raw', 'postprocessed', 'features'}
    pca : str, optional
        The reader's PCA parameters id (postprocessed readers).
    """
    if entry["kind"] in ("features", "melspec") or kind in ("features", "melspec"):
        return entry["kind"] == kind
    if entry["kind"] == "raw":
        return True
    return kind == "postprocessed" and entry["pca"] == pca


def embedding_for(entry, postprocessor=None):
    """The entry's embedding as a reader needs it.

    Parameters
    ----------
    entry : dict
    postprocessor : tagger.embedding.postprocess.Postprocessor, optional
        Given when the reader needs postprocessed embeddings: a raw entry is
        postprocessed on the fly.

    Returns
    -------
    np.ndarray, shape (T, 128): float32 raw, or uint8 postprocessed
    """
    if postprocessor is not None and entry["kind"] == "raw":
        return postprocessor(entry["embedding"])
    if postprocessor is None and entry["kind"] == "postprocessed":
        raise DataError(f"{entry['source']}: the cache holds postprocessed embeddings only; raw ones are needed")
    return entry["embedding"]


def writable(cache_dir):
    """Whether entries can be written into ``cache_dir`` (created when missing and possible)."""
    cache_dir = os.fspath(cache_dir)
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError:
        return False
    return os.access(cache_dir, os.W_OK | os.X_OK)


def read_entry(cache_dir, track_id=None, *, frontend=None, weights=None, fingerprint=None):
    """Read and validate one entry.

    Parameters
    ----------
    cache_dir : str
        Cache folder, or the entry's path when ``track_id`` is None.
    track_id : str, optional
    frontend, weights, fingerprint : optional
        Expected values; a mismatch raises :class:`StaleEntry`.

    Returns
    -------
    dict
    """
    path = os.fspath(cache_dir) if track_id is None else entry_path(cache_dir, track_id)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no cache entry") from exc
    return loads_entry(data, path=path, frontend=frontend, weights=weights, fingerprint=fingerprint)


def loads_entry(data, *, path="<entry>", frontend=None, weights=None, fingerprint=None):
    """An entry from its bytes (read from a file or a bucket object), unpickled safely and checked as :func:`read_entry` does."""
    try:
        entry = safe_loads(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: unreadable or unsafe cache entry ({exc})") from exc
    return check_entry(entry, path=path, frontend=frontend, weights=weights, fingerprint=fingerprint)


def embedding_as_float(entry):
    """The entry's embedding as float32: raw as is, quantised ones dequantised to [-2, 2]."""
    from .postprocess import dequantize

    emb = entry["embedding"]
    return dequantize(emb) if emb.dtype == np.uint8 else emb.astype(np.float32, copy=False)
