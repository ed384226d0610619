"""Finding audio files: files, folders (recursive, globs) and list files -> (path, track id)."""

import fnmatch
import hashlib
import logging
import os

from ..exceptions import DataError

log = logging.getLogger(__name__)

__all__ = [
    "AUDIO_EXTENSIONS",
    "LIST_EXTENSIONS",
    "collect",
    "check_inputs",
    "track_id_for",
    "fingerprint",
    "fingerprint_stream",
    "matches",
]

AUDIO_EXTENSIONS = (
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".au",
    ".snd",
    ".aif",
    ".aiff",
    ".aifc",
    ".w64",
    ".caf",
)
LIST_EXTENSIONS = (".txt", ".lst", ".list", ".m3u")


def matches(rel, patterns):
    """Whether a relative path or its file name matches any of the glob patterns."""
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(os.path.basename(rel), p) for p in patterns)


ABS_PREFIX = "_abs"  # track ids of files outside the root: _abs/<absolute path>


def track_id_for(path, root=None):
    """The cache track id of an audio file: its path relative to ``root`` (default: the working folder).

    One id per source within a cache, whatever the inputs were: ``tagger tag
    a/sub1/same.au`` and ``tagger tag a/sub2/same.au`` get ``a/sub1/same.au``
    and ``a/sub2/same.au``. A file outside ``root`` gets
    ``_abs/<its absolute path>``. Paths are made absolute without resolving
    symbolic links; separators are ``/``.

    Parameters
    ----------
    path : str or os.PathLike
    root : str or os.PathLike, optional

    Returns
    -------
    str
    """
    path = os.path.abspath(os.fspath(path))
    root = os.path.abspath(os.fspath(root) if root is not None else os.getcwd())
    rel = os.path.relpath(path, root)
    if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
        rel = ABS_PREFIX + path
    return rel.replace(os.sep, "/")


def fingerprint(path, *, block=1 << 16):
    """Content fingerprint of a file: its size and a SHA-256 of its first and last ``block`` bytes.

    Cheap (two small reads) and kept across copies (unlike mtimes), it tells a
    cache entry whether its source is still the audio it was made from. An
    edit that keeps the size and both ends is not seen: ``--overwrite``
    re-embeds in that case.

    Returns
    -------
    str or None
        ``'<size>:<hex>'``; None when the file cannot be read (the decoder
        then reports why).
    """
    try:
        with open(os.fspath(path), "rb") as f:
            return fingerprint_stream(f, os.fstat(f.fileno()).st_size, block=block)
    except OSError:
        return None


def fingerprint_stream(f, size, *, block=1 << 16):
    """:func:`fingerprint` of an open, seekable binary stream of ``size`` bytes (a local file or a bucket object)."""
    digest = hashlib.sha256(f.read(block))
    if size > block:
        f.seek(max(block, size - block))
        digest.update(f.read(block))
    return f"{size}:{digest.hexdigest()[:32]}"


def _walk(folder):
    """Audio-candidate files below a folder, symbolic links to folders followed once each (a loop is cut, with a warning)."""
    seen = {os.path.realpath(folder)}
    for dirpath, dirs, names in os.walk(folder, followlinks=True):
        dirs.sort()
        kept = []
        for name in dirs:
            real = os.path.realpath(os.path.join(dirpath, name))
            if real in seen:
                log.warning(
                    "%s: a link to a folder already searched (%s); not searched again",
                    os.path.join(dirpath, name),
                    real,
                )
                continue
            seen.add(real)
            kept.append(name)
        dirs[:] = kept
        for name in sorted(names):
            yield os.path.join(dirpath, name)


def _read_list(path):
    """The entries of a list file (``.txt``, ``.m3u`` …): one path a line, ``#`` comments, a byte-order mark dropped."""
    try:
        with open(path, encoding="utf-8-sig", errors="surrogateescape") as f:
            return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    except OSError as exc:
        raise DataError(f"{path}: list file unreadable ({exc.strerror})") from exc


def check_inputs(inputs):
    """Refuse the first input (file, folder or list file) that does not exist (:class:`DataError`)."""
    for item in inputs:
        if not os.path.lexists(item):
            raise DataError(f"{os.fspath(item)}: no such file or folder")


def collect(inputs, *, include=(), exclude=(), root=None, required=False):
    """Expand inputs into audio files with track ids.

    Parameters
    ----------
    inputs : sequence of str
        Audio files (taken whatever their extension), folders (searched
        recursively for :data:`AUDIO_EXTENSIONS`, symbolic links to folders
        followed, each real folder once), or list files (``.txt``, ``.lst``,
        ``.m3u``: one path per line, relative to the list's folder, ``#``
        comments, a UTF-8 byte-order mark ignored). A listed file that does
        not exist is kept as an input, so the command reports it in its
        errors file like any bad file.
    include, exclude : sequence of str
        Glob patterns matched against the path relative to its folder input
        and against the file name.
    root : str, optional
        Folder the track ids are relative to (:func:`track_id_for`; default
        the working folder).
    required : bool
        Raise when no audio file is found (the commands that work on files).

    Returns
    -------
    list of (str, str)
        ``(path, track_id)`` in a stable order, each file once (files with the
        same name in different folders are different tracks; one file named
        twice, as ``music/a.au`` and ``./music/a.au``, is one).

    Raises
    ------
    DataError
        A missing input; with ``required``, inputs holding no audio file; two
        different files that map to one track id (both named).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            for path in _walk(item):
                name = os.path.basename(path)
                rel = os.path.relpath(path, item).replace(os.sep, "/")
                if not name.lower().endswith(AUDIO_EXTENSIONS) or name.startswith("."):
                    continue
                if include and not matches(rel, include):
                    continue
                if exclude and matches(rel, exclude):
                    continue
                found.append(path)
        elif os.path.isfile(item) and item.lower().endswith(LIST_EXTENSIONS):
            base = os.path.dirname(item)
            for line in _read_list(item):
                listed = os.path.join(base, line)
                if os.path.lexists(listed):
                    found.extend(p for p, _ in collect([listed], include=include, exclude=exclude))
                else:
                    found.append(listed)  # reported by the command that reads it, with the others that fail
        else:
            check_inputs([item])
            found.append(item)
    unique, owner = [], {}
    for path in found:
        track_id = track_id_for(path, root)
        key = os.path.normpath(os.path.abspath(path))
        if track_id in owner:
            if owner[track_id][1] != key:
                raise DataError(
                    f"two inputs map to one track id {track_id!r}: {owner[track_id][0]} and {path}; rename one, or"
                    " tag them with another --root"
                )
            continue
        owner[track_id] = (path, key)
        unique.append((path, track_id))
    if required and not unique:
        raise DataError(f"no audio files found in {[os.fspath(i) for i in inputs]}")
    return unique
