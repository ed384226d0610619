"""Appendable record files (CSV, TSV, JSONL) read back with their own parsers, and atomic JSON.

Outputs grow a record at a time and a killed run may leave the last record
cut off. :func:`read_records` parses a file with the csv or json parser (a
quoted field may hold newlines, tabs or U+2028; lines are never split by
hand), keeps every complete record and truncates an incomplete tail, so a
rerun appends after the last complete record.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import secrets
import shutil
from typing import Any, Callable, Iterator, Sequence

from .exceptions import DataError, ParameterError

__all__ = [
    "read_records",
    "ErrorsWriter",
    "read_errors",
    "write_atomic",
    "write_json_atomic",
    "write_folder_atomic",
    "ERRORS_HEADER",
    "delimited_line",
    "no_space",
    "NO_SPACE",
    "TEXT",
]

ERRORS_HEADER = ("path", "error")


def _lines(data: bytes) -> Iterator[bytes]:
    """Split bytes after each b'\\n' only (UTF-8 never holds that byte inside a character)."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end + 1
        yield data[start:end]
        start = end


def _parse_delimited(data: bytes, delimiter: str, path: str) -> tuple[list[str] | None, list[dict[str, Any]], int]:
    """(header, rows, complete byte length) of a CSV/TSV held in ``data``."""
    consumed = []

    def feed() -> Iterator[str]:
        for line in _lines(data):
            consumed.append(len(line))
            yield line.decode("utf-8", "surrogateescape")

    reader = csv.reader(feed(), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    rows: list[dict[str, Any]] = []
    good = 0
    while True:
        mark = len(consumed)
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if sum(consumed) >= len(data):  # cut off inside the last record
                break
            raise DataError(f"{path}: damaged record after byte {good} ({exc}); move the file away") from exc
        size = sum(consumed[mark:])
        if not data[good + size - 1 : good + size] == b"\n":
            break  # the last record has no line end yet: cut off
        if header is None:
            header = row
        elif len(row) != len(header):
            if good + size >= len(data):
                break
            raise DataError(
                f"{path}: record {len(rows) + 1} has {len(row)} fields, the header {len(header)}; "
                "the file is damaged or was written with other settings"
            )
        else:
            rows.append(dict(zip(header, row)))
        good += size
    return header, rows, good


def _parse_jsonl(data: bytes, path: str) -> tuple[None, list[dict[str, Any]], int]:
    rows, good = [], 0
    for line in _lines(data):
        if not line.endswith(b"\n"):
            break
        try:
            rows.append(json.loads(line.decode("utf-8", "surrogateescape")))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {len(rows) + 1} is not JSON ({exc}); the file is damaged") from exc
        good += len(line)
    return None, rows, good


def read_records(path: str, kind: str, *, truncate: bool = False) -> tuple[list[str] | None, list[dict[str, Any]]]:
    """Complete records of an appendable file; an incomplete tail is cut away.

    Parameters
    ----------
    path : str
    kind : {'csv', 'tsv', 'jsonl'}
    truncate : bool
        Cut an incomplete last record off the file (a killed writer's). Only the writer that holds the output's
        lock may (:class:`tagger.resumable.ResumableOutput`, on resume); a reader never writes, so one reading
        beside a running writer never cuts its half-written row.

    Returns
    -------
    header : list of str or None
        The header row (None for JSONL, or an empty file).
    rows : list of dict
        One per complete record (CSV/TSV: header -> value).

    Examples
    --------
    A tag output cut short by a kill: the finished rows, not the half-written one (``TMP``: a folder):

    >>> import os
    >>> path = os.path.join(TMP, "tags.csv")
    >>> with open(path, "w", encoding="utf-8") as f:
    ...     _ = f.write("path,tag_1\\na.wav,Blues\\nb.wav,Ja")
    >>> read_records(path, "csv")
    (['path', 'tag_1'], [{'path': 'a.wav', 'tag_1': 'Blues'}])
    """
    if not os.path.exists(path):
        return None, []
    with open(path, "rb") as f:
        data = f.read()
    try:
        if kind == "jsonl":
            header, rows, good = _parse_jsonl(data, path)
        else:
            header, rows, good = _parse_delimited(data, "\t" if kind == "tsv" else ",", path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc}); move the file away") from exc
    if truncate and good < len(data):
        with open(path, "rb+") as f:
            f.truncate(good)
    return header, rows


def read_errors(path: str, *, truncate: bool = False) -> list[tuple[str, str]]:
    """``(path, error)`` rows of an errors file written by :class:`ErrorsWriter` (empty when missing).

    ``truncate``: as :func:`read_records` (the writer's, on resume).
    """
    header, rows = read_records(path, "tsv", truncate=truncate)
    if header is not None and tuple(header) != ERRORS_HEADER:
        raise DataError(f"{path}: not a tagger errors file (header {header}); move it away or pass another --errors")
    return [(r["path"], r["error"]) for r in rows]


#: how every record file is opened: UTF-8, with file names that are not valid UTF-8 kept byte for byte
#: (``surrogateescape``: read back with the same setting, ``os.fsencode(name)`` gives the original bytes)
TEXT: dict[str, Any] = {"encoding": "utf-8", "errors": "surrogateescape"}
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def delimited_line(values: Sequence[Any], delimiter: str = ",") -> str:
    """One CSV/TSV record without its line end, quoted as the csv module quotes (newlines, tabs, quotes survive).

    The one quoting of every delimited output, local or Beam shard.
    """
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerow(values)
    return out.getvalue()[:-2]


def no_space(path: str, exc: OSError, kept: str = "finished work is kept") -> DataError:
    """The error of a write that found the disk full (or over quota): names the path, says nothing is lost."""
    return DataError(
        f"{path}: could not be written: {exc.strerror or 'no space left on the device'}; {kept}, and a rerun"
        " after freeing space continues where this one stopped"
    )


class ErrorsWriter:
    """Append ``path<TAB>error`` records (csv-quoted, so any path or message survives) to an errors file."""

    def __init__(self, path: str) -> None:
        self.path = path
        fresh = not os.path.exists(path) or os.path.getsize(path) == 0
        self.file = open(path, "a", newline="", **TEXT)
        if fresh:
            self._append(delimited_line(ERRORS_HEADER, "\t"))

    def _append(self, line: str) -> None:
        try:
            self.file.write(line + "\r\n")
            self.file.flush()
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise no_space(self.path, exc) from exc
            raise

    def write(self, path: str, error: str) -> None:
        self._append(delimited_line((path, error), "\t"))

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> ErrorsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_atomic(path: str, write: Callable[[Any], Any], *, binary: bool = False, fsync: bool = False) -> str:
    """Write a file atomically: ``write(f)`` fills a temporary file in the same folder (made if missing), then a rename.

    The file gets the permissions the umask allows (``mkstemp`` would make
    0600 files, which a group-shared cache or output could not read). A
    failure, or a Ctrl-C or SIGTERM at any point, leaves no temporary file
    behind.

    Returns
    -------
    str
        ``path``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)  # an output's missing folder is made, as `tagger tag` makes its --out's
    # the name is known before the file exists, so a Ctrl-C or SIGTERM arriving at any point unwinds through the
    # clean-up below with the name in hand (mkstemp made the file before returning its name: a signal in between
    # left the .tmp-* behind)
    tmp = None
    try:
        while True:
            tmp = os.path.join(folder, f".tmp-{secrets.token_hex(8)}{os.path.splitext(path)[1]}")
            try:
                fd = _create(tmp)
                break
            except FileExistsError:  # another writer's: not ours to remove
                tmp = None
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            raise no_space(path, exc) from exc
        raise
    return path


def write_folder_atomic(
    path: str, write: Callable[[str], Any], *, overwrite: bool = False, what: str = "folder"
) -> str:
    """Write a folder of files whole or not at all: ``write(tmp)`` fills a temporary sibling, then a rename.

    The sibling (``.NAME.tmp-*``, in the same folder so the rename is atomic) gets the permissions the umask
    allows. A failure or a Ctrl-C inside ``write`` removes it and leaves ``path`` as it was. An existing
    ``path`` is refused unless ``overwrite``; then it is renamed aside (``.NAME.old-*``), the new folder renamed
    into place and the old one removed, so ``path`` is never half old and half new (a kill between the two
    renames leaves it absent, with both siblings beside it).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    ParameterError
        ``path`` exists and ``overwrite`` is False, or it is not a folder.
    """
    path = os.path.normpath(os.fspath(path))
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ParameterError(f"{path} exists and is not a folder: write the {what} to another place")
    if os.path.exists(path) and not overwrite:
        raise ParameterError(f"{path} exists: pass --overwrite to replace it, or write the {what} to another place")
    parent, name = os.path.split(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name}.tmp-{secrets.token_hex(8)}")
    made = False
    try:
        os.mkdir(tmp)  # 0o777 less the umask, as a plain mkdir
        made = True
        write(tmp)
        if os.path.exists(path):
            old = os.path.join(parent, f".{name}.old-{secrets.token_hex(8)}")
            os.rename(path, old)
            os.rename(tmp, path)
            made = False
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
            made = False
    except BaseException as exc:
        if made:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            raise no_space(path, exc, f"the {what} was not written") from exc
        raise
    return path


def _create(path: str) -> int:
    """Create ``path`` (it must not exist) for writing: the umask's permissions, as ``open`` gives."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)


def write_json_atomic(obj: Any, path: str, *, indent: int = 1) -> str:
    """Write JSON to ``path`` atomically (:func:`write_atomic`)."""
    return write_atomic(path, lambda f: json.dump(obj, f, indent=indent))
