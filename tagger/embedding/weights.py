"""The plain weights file every model's weights can be exported to (``tagger weights export``): an ``.npz`` or
``.safetensors`` file of named arrays, read on every Keras backend without TensorFlow; and the memo of weights ids.

The memo (:func:`recall_id`, :func:`remember_id`) lets a run that has nothing to do (every clip in the cache or
the output) know its weights' content id without reading them: the id computed the last time the same local
files (path, size, modification and change times, inode) were read. A file changed in any of these is read
again; a memo that cannot be read or written costs only that read. It lives in ``$TAGGER_CACHE_HOME``
(default ``$XDG_CACHE_HOME/tagger``, else ``~/.cache/tagger``).
"""

import glob
import json
import logging
import os

import numpy as np

from ..exceptions import DataError
from ..records import write_json_atomic

__all__ = ["PLAIN_FORMATS", "read_plain", "signature", "recall_id", "remember_id", "memo_path"]

log = logging.getLogger(__name__)

#: how many weights sources the memo keeps (the most recently remembered)
MEMO_SIZE = 64

#: the endings of the plain file's two forms
PLAIN_FORMATS = (".npz", ".safetensors")


def read_plain(path):
    """An ``.npz`` or ``.safetensors`` file -> ``{name: array}`` (no pickles: ``allow_pickle=False``).

    Raises
    ------
    DataError
        The file cannot be read as either form (named, with the reader's words).
    """
    try:
        if path.endswith(".safetensors"):
            from safetensors.numpy import load_file

            return load_file(path)
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception as exc:  # noqa: BLE001 - zip, header and safetensors errors come in many types
        raise DataError(f"{path}: cannot read a plain weights file ({type(exc).__name__}: {exc})") from exc


def memo_path():
    """The memo file: ``$TAGGER_CACHE_HOME/weights-ids.json`` (default ``$XDG_CACHE_HOME/tagger``, else
    ``~/.cache/tagger``)."""
    home = os.environ.get("TAGGER_CACHE_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "tagger"
    )
    return os.path.join(home, "weights-ids.json")


def _files(source):
    """The files a local weights source is read from (a file; a checkpoint prefix's files; a folder's), or None."""
    if "://" in source:
        return None
    if os.path.isdir(source):
        found = [os.path.join(d, n) for d, _, names in os.walk(source) for n in names]
    else:
        found = [p for p in [source, *glob.glob(glob.escape(source) + ".*")] if os.path.isfile(p)]
    return sorted(found) or None


def signature(source):
    """What identifies a local weights source's files without reading them: each file's path, size, modification
    and change times (ns) and inode; None for a remote source (a TF Hub handle) or one that is not there.

    Returns
    -------
    list of list or None
    """
    paths = _files(os.fspath(source))
    if paths is None:
        return None
    try:
        stats = [(p, os.stat(p)) for p in paths]
    except OSError:
        return None
    return [[os.path.realpath(p), s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino] for p, s in stats]


def _read_memo():
    try:
        with open(memo_path(), encoding="utf-8") as f:
            memo = json.load(f)
        return memo if isinstance(memo, dict) else {}
    except (OSError, ValueError):
        return {}


def recall_id(source, *, model):
    """The weights id last computed for ``source`` (of ``model``) while its files were as they are now, or None."""
    now = signature(source)
    if now is None:
        return None
    entry = _read_memo().get(f"{model}:{os.path.realpath(os.fspath(source))}")
    if isinstance(entry, dict) and entry.get("signature") == now and isinstance(entry.get("id"), str):
        return entry["id"]
    return None


def remember_id(source, before, weights_id, *, model):
    """Remember ``weights_id`` for ``source`` when its files are still as :func:`signature` found them ``before``
    it was read (a file changed meanwhile is not remembered). Never raises: a memo is a shortcut, not a record."""
    if before is None or signature(source) != before:
        return
    memo = _read_memo()
    key = f"{model}:{os.path.realpath(os.fspath(source))}"
    memo.pop(key, None)
    memo[key] = {"signature": before, "id": weights_id}
    memo = dict(list(memo.items())[-MEMO_SIZE:])
    try:
        os.makedirs(os.path.dirname(memo_path()), exist_ok=True)
        write_json_atomic(memo, memo_path())
    except (OSError, DataError) as exc:
        log.debug("weights id memo %s not written (%s)", memo_path(), exc)
