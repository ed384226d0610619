"""Finding audio files: files, folders (recursive, globs) and list files -> (path, track id)."""

import fnmatch
import os

from .exceptions import DataError, ParameterError

__all__ = ["AUDIO_EXTENSIONS", "LIST_EXTENSIONS", "collect"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".au", ".snd", ".aif", ".aiff", ".aifc", ".w64", ".caf")
LIST_EXTENSIONS = (".txt", ".lst", ".list", ".m3u")


def _matches(rel, patterns):
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(os.path.basename(rel), p) for p in patterns)


def collect(inputs, *, include=(), exclude=()):
    """Expand inputs into audio files with stable track ids.

    Parameters
    ----------
    inputs : sequence of str
        Audio files (taken whatever their extension), folders (searched
        recursively for :data:`AUDIO_EXTENSIONS`), or list files (``.txt``,
        ``.lst``, ``.m3u``: one path per line, relative to the list's folder,
        ``#`` comments).
    include, exclude : sequence of str
        Glob patterns matched against the path relative to its folder input
        and against the file name.

    Returns
    -------
    list of (str, str)
        ``(path, track_id)`` in a stable order; the track id is the path
        relative to its folder input (a file's own name for a file input).

    Raises
    ------
    DataError
        A missing input, or two files with the same track id.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            for root, dirs, names in os.walk(item):
                dirs.sort()
                for name in sorted(names):
                    path = os.path.join(root, name)
                    rel = os.path.relpath(path, item).replace(os.sep, "/")
                    if not name.lower().endswith(AUDIO_EXTENSIONS) or name.startswith("."):
                        continue
                    if include and not _matches(rel, include):
                        continue
                    if exclude and _matches(rel, exclude):
                        continue
                    found.append((path, rel))
        elif os.path.isfile(item) and item.lower().endswith(LIST_EXTENSIONS):
            base = os.path.dirname(item)
            with open(item, encoding="utf-8") as f:
                lines = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
            found.extend(collect([os.path.join(base, ln) for ln in lines], include=include, exclude=exclude))
        elif os.path.lexists(item):
            found.append((item, os.path.basename(item)))
        else:
            raise DataError(f"{item}: no such file or folder")
    seen = {}
    for path, track_id in found:
        if track_id in seen and os.path.abspath(seen[track_id]) != os.path.abspath(path):
            raise ParameterError(
                f"two inputs share the track id {track_id!r}: {seen[track_id]} and {path}; pass their common folder instead"
            )
        seen[track_id] = path
    unique, done = [], set()
    for path, track_id in found:
        if track_id not in done:
            done.add(track_id)
            unique.append((path, track_id))
    return unique
