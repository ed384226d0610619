"""Appendable record files (CSV, TSV, JSONL) read back with their own parsers, and atomic JSON.

Outputs grow a record at a time and a killed run may leave the last record
cut off. :func:`read_records` parses a file with the csv or json parser (a
quoted field may hold newlines, tabs or U+2028; lines are never split by
hand), keeps every complete record and truncates an incomplete tail, so a
rerun appends after the last complete record.
"""

import csv
import json
import os
import tempfile

from .exceptions import DataError, ParameterError

__all__ = [
    "read_records",
    "ErrorsWriter",
    "read_errors",
    "write_atomic",
    "write_json_atomic",
    "umask",
    "ERRORS_HEADER",
    "check_resume",
    "resume_output",
    "progress_bar",
]

ERRORS_HEADER = ("path", "error")


def _lines(data):
    """Split bytes after each b'\\n' only (UTF-8 never holds that byte inside a character)."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end + 1
        yield data[start:end]
        start = end


def _parse_delimited(data, delimiter, path):
    """(header, rows, complete byte length) of a CSV/TSV held in ``data``."""
    consumed = []

    def feed():
        for line in _lines(data):
            consumed.append(len(line))
            yield line.decode("utf-8")

    reader = csv.reader(feed(), delimiter=delimiter, strict=True)
    header, rows, good = None, [], 0
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


def _parse_jsonl(data, path):
    rows, good = [], 0
    for line in _lines(data):
        if not line.endswith(b"\n"):
            break
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {len(rows) + 1} is not JSON ({exc}); the file is damaged") from exc
        good += len(line)
    return None, rows, good


def read_records(path, kind, *, truncate=True):
    """Complete records of an appendable file; an incomplete tail is cut away.

    Parameters
    ----------
    path : str
    kind : {'csv', 'tsv', 'jsonl'}
    truncate : bool
        Cut an incomplete last record off the file (a killed writer's).

    Returns
    -------
    header : list of str or None
        The header row (None for JSONL, or an empty file).
    rows : list of dict
        One per complete record (CSV/TSV: header -> value).
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


def read_errors(path):
    """``(path, error)`` rows of an errors file written by :class:`ErrorsWriter` (empty when missing)."""
    header, rows = read_records(path, "tsv")
    if header is not None and tuple(header) != ERRORS_HEADER:
        raise DataError(f"{path}: not a tagger errors file (header {header}); move it away or pass another --errors")
    return [(r["path"], r["error"]) for r in rows]


class ErrorsWriter:
    """Append ``path<TAB>error`` records (csv-quoted, so any path or message survives) to an errors file."""

    def __init__(self, path):
        self.path = path
        fresh = not os.path.exists(path) or os.path.getsize(path) == 0
        self.file = open(path, "a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file, delimiter="\t")
        if fresh:
            self.writer.writerow(ERRORS_HEADER)
            self.file.flush()

    def write(self, path, error):
        self.writer.writerow((path, error))
        self.file.flush()

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_atomic(path, write, *, binary=False, fsync=False):
    """Write a file atomically: ``write(f)`` fills a temporary file in the same folder, then a rename.

    The file gets the permissions the umask allows (``mkstemp`` alone makes
    0600 files, which a group-shared cache or output could not read). A
    failure leaves no temporary file behind.

    Returns
    -------
    str
        ``path``.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json_atomic(obj, path, *, indent=1):
    """Write JSON to ``path`` atomically (:func:`write_atomic`)."""
    return write_atomic(path, lambda f: json.dump(obj, f, indent=indent))


_UMASK = None


def umask():
    """The process umask (read once: reading it means setting it)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return _UMASK


def _describe(value):
    if isinstance(value, dict) and "hash" in value:
        return f"{value['name']} ({value['hash']})"
    return json.dumps(value)


def _differences(old, new):
    keys = sorted(set(old) | set(new))

    def same(k):  # a model is the same when its content hash is
        if k == "model":
            return (old.get(k) or {}).get("hash") == (new.get(k) or {}).get("hash")
        return old.get(k) == new.get(k)

    return [f"{k}: {_describe(old.get(k))} then, {_describe(new.get(k))} now" for k in keys if not same(k)]


def check_resume(out, errors_file, meta_path, settings):
    """Refuse to continue an output made with other settings, or one whose settings are unknown.

    ``meta_path`` holds ``{"settings": ...}`` as the run that began ``out`` wrote it
    (``tag_to_file``, ``features_to_file``); an output begun without one is refused too.
    """
    started = any(os.path.exists(p) and os.path.getsize(p) > 0 for p in (out, errors_file))
    if not started:
        return
    if not os.path.exists(meta_path):
        raise ParameterError(
            f"{out} exists but has no {os.path.basename(meta_path)}: it was written by an older tagger (or another"
            " program), so the settings it was made with are unknown and it cannot be continued safely; rerun with"
            " --overwrite to write it from scratch, or write to another --out"
        )
    try:
        with open(meta_path, encoding="utf-8") as f:
            old = json.load(f)["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{meta_path}: unreadable ({exc}); rerun with --overwrite, or write to another --out") from exc
    diff = _differences(old, json.loads(json.dumps(settings)))
    if diff:
        raise ParameterError(
            f"{out} was made with other settings ({'; '.join(diff)}); rerun with --overwrite to replace it,"
            " or write to another --out"
        )


def resume_output(out, errors_file, meta_path, settings, *, kind, fieldnames=None):
    """Begin or continue an appendable output: check and record its settings, and say what it holds.

    Refuses (:func:`check_resume`) an output made with other settings, or
    with columns other than ``fieldnames``; then writes ``meta_path``.

    Returns
    -------
    header : list of str or None
        The output's header (None when it is new, or JSONL).
    done : set of str
        Paths already written, or listed in the errors file: a rerun skips them.
    failures : list of (str, str)
        The errors file's rows so far.
    """
    from . import __version__

    check_resume(out, errors_file, meta_path, settings)
    write_json_atomic({"tagger": __version__, "settings": settings}, meta_path)
    header, rows = read_records(out, kind)
    if fieldnames is not None and header is not None and header != list(fieldnames):
        raise DataError(
            f"{out}: its columns {header} are not those of these settings {list(fieldnames)}; rerun with"
            " --overwrite, or write to another --out"
        )
    failures = read_errors(errors_file)
    return header, {row["path"] for row in rows} | {path for path, _ in failures}, failures


def progress_bar(work, *, desc, unit="clip", progress=None):
    """The progress bar of long work (tqdm): over an iterable, or counting to ``work`` when it is an int.

    Parameters
    ----------
    work : int or iterable
        How many steps, or what to iterate over.
    desc, unit : str
        Shown before and after the count.
    progress : bool, optional
        True: always shown; False: never; None (default): shown when standard error is a terminal.
    """
    from tqdm.auto import tqdm

    disable = (not progress) if progress is not None else None
    if isinstance(work, int):
        return tqdm(total=work, desc=desc, unit=unit, disable=disable)
    return tqdm(work, desc=desc, unit=unit, disable=disable)
