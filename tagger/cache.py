"""The embedding cache: one pickle per track, written atomically, read safely.

Entry (a dict, ``<cache>/<track_id>.pkl``):

``format`` int, :data:`FORMAT`; ``embedding`` np.ndarray (T, 128), float32
raw or uint8 postprocessed; ``timestamps`` np.ndarray (T,), patch start times
in seconds; ``frontend`` dict, :func:`tagger.params.frontend_params`;
``weights`` str, identifier of the weights that made it; ``source`` str,
audio path or record id; ``duration`` float, seconds (or None).

Loading uses a restricted unpickler that accepts NumPy arrays and builtins
only, so a planted pickle cannot run code.
"""

import io
import os
import pickle
import tempfile

import numpy as np

from .exceptions import DataError, ParameterError

__all__ = ["FORMAT", "entry_path", "make_entry", "write_entry", "read_entry", "check_entry", "safe_loads", "embedding_as_float"]

FORMAT = 1
_KEYS = ("format", "embedding", "timestamps", "frontend", "weights", "source")

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
_ALLOWED_DTYPE_CLASSES = {"Float32DType", "Float64DType", "UInt8DType", "Int64DType", "Int32DType", "BoolDType"}


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


def make_entry(embedding, timestamps, *, frontend, weights, source, duration=None):
    """Assemble a cache entry after checking shapes and types.

    Parameters
    ----------
    embedding : np.ndarray, shape (T, 128), float32 or uint8
    timestamps : np.ndarray, shape (T,)
    frontend : dict
    weights : str
    source : str
    duration : float, optional

    Returns
    -------
    dict
    """
    embedding = np.asarray(embedding)
    if embedding.dtype not in (np.float32, np.uint8):
        embedding = embedding.astype(np.float32)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if embedding.ndim != 2 or embedding.shape[1] != 128 or len(embedding) == 0:
        raise DataError(f"{source}: embedding must have shape (T>0, 128), got {embedding.shape}")
    if timestamps.shape != (len(embedding),):
        raise DataError(f"{source}: timestamps shape {timestamps.shape} does not match {len(embedding)} patches")
    return {
        "format": FORMAT,
        "embedding": embedding,
        "timestamps": timestamps,
        "frontend": dict(frontend),
        "weights": str(weights),
        "source": str(source),
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
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pkl")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def check_entry(entry, *, path="<entry>", frontend=None, weights=None):
    """Validate an entry's format and, when given, its frontend and weights.

    Raises
    ------
    DataError
        Naming the entry and the first mismatch (a stale entry).
    """
    if not isinstance(entry, dict) or any(k not in entry for k in _KEYS):
        raise DataError(f"{path}: not a tagger cache entry (keys {sorted(entry) if isinstance(entry, dict) else type(entry)})")
    if entry["format"] != FORMAT:
        raise DataError(f"{path}: cache format {entry['format']!r}, this tagger reads {FORMAT}; re-embed with --overwrite")
    if frontend is not None and entry["frontend"] != dict(frontend):
        diff = {k: (entry["frontend"].get(k), v) for k, v in frontend.items() if entry["frontend"].get(k) != v}
        raise DataError(f"{path}: stale entry, frontend differs (cached, wanted): {diff}; re-embed with --overwrite")
    if weights is not None and entry["weights"] != weights:
        raise DataError(f"{path}: stale entry, made with weights {entry['weights']}, wanted {weights}; re-embed with --overwrite")
    return entry


def read_entry(cache_dir, track_id=None, *, frontend=None, weights=None):
    """Read and validate one entry.

    Parameters
    ----------
    cache_dir : str
        Cache folder, or the entry's path when ``track_id`` is None.
    track_id : str, optional
    frontend, weights : optional
        Expected values; a mismatch raises :class:`DataError`.

    Returns
    -------
    dict
    """
    path = os.fspath(cache_dir) if track_id is None else entry_path(cache_dir, track_id)
    try:
        with open(path, "rb") as f:
            entry = safe_loads(f.read())
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no cache entry") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: unreadable or unsafe cache entry ({exc})") from exc
    return check_entry(entry, path=path, frontend=frontend, weights=weights)


def embedding_as_float(entry):
    """The entry's embedding as float32: raw as is, quantised ones dequantised to [-2, 2]."""
    from .vggish import dequantize

    emb = entry["embedding"]
    return dequantize(emb) if emb.dtype == np.uint8 else emb.astype(np.float32, copy=False)
