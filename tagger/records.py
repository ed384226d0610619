"""Appendable record files (CSV, TSV, JSONL) read back with their own parsers, and atomic JSON.

Outputs grow a record at a time and a killed run may leave the last record
cut off. :func:`read_records` parses a file with the csv or json parser (a
quoted field may hold newlines, tabs or U+2028; lines are never split by
hand), keeps every complete record and truncates an incomplete tail, so a
rerun appends after the last complete record.
"""

import contextlib
import csv
import errno
import io
import json
import os
import secrets
import sys
import tempfile
import threading

from . import locks
from .embedding import params, provenance
from .exceptions import DataError, ParameterError
from .version import __version__

__all__ = [
    "read_records",
    "ErrorsWriter",
    "read_errors",
    "write_atomic",
    "write_json_atomic",
    "ERRORS_HEADER",
    "check_resume",
    "read_table",
    "parquet_path_columns",
    "ResumableOutput",
    "delimited_line",
    "no_space",
    "TEXT",
    "progress_bar",
    "filtered_stderr",
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
            yield line.decode("utf-8", "surrogateescape")

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
            rows.append(json.loads(line.decode("utf-8", "surrogateescape")))
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


#: how every record file is opened: UTF-8, with file names that are not valid UTF-8 kept byte for byte
#: (``surrogateescape``: read back with the same setting, ``os.fsencode(name)`` gives the original bytes)
TEXT = {"encoding": "utf-8", "errors": "surrogateescape"}
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def delimited_line(values, delimiter=","):
    """One CSV/TSV record without its line end, quoted as the csv module quotes (newlines, tabs, quotes survive).

    The one quoting of every delimited output, local or Beam shard.
    """
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerow(values)
    return out.getvalue()[:-2]


def no_space(path, exc, kept="finished work is kept"):
    """The error of a write that found the disk full (or over quota): names the path, says nothing is lost."""
    return DataError(
        f"{path}: could not be written: {exc.strerror or 'no space left on the device'}; {kept}, and a rerun"
        " after freeing space continues where this one stopped"
    )


class ErrorsWriter:
    """Append ``path<TAB>error`` records (csv-quoted, so any path or message survives) to an errors file."""

    def __init__(self, path):
        self.path = path
        fresh = not os.path.exists(path) or os.path.getsize(path) == 0
        self.file = open(path, "a", newline="", **TEXT)
        if fresh:
            self._append(delimited_line(ERRORS_HEADER, "\t"))

    def _append(self, line):
        try:
            self.file.write(line + "\r\n")
            self.file.flush()
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise no_space(self.path, exc) from exc
            raise

    def write(self, path, error):
        self._append(delimited_line((path, error), "\t"))

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_atomic(path, write, *, binary=False, fsync=False):
    """Write a file atomically: ``write(f)`` fills a temporary file in the same folder, then a rename.

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
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            raise no_space(path, exc) from exc
        raise
    return path


def _create(path):
    """Create ``path`` (it must not exist) for writing: the umask's permissions, as ``open`` gives."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)


def write_json_atomic(obj, path, *, indent=1):
    """Write JSON to ``path`` atomically (:func:`write_atomic`)."""
    return write_atomic(path, lambda f: json.dump(obj, f, indent=indent))


def _describe(value):
    if isinstance(value, dict) and "hash" in value:
        return f"{value['name']} ({value['hash']})"
    return json.dumps(value)


def _differences(old, new):
    """Every setting that differs: provenance fields by :func:`tagger.embedding.provenance.differences`, the rest here."""
    fields = [k for k in provenance.FIELDS if k in old or k in new]
    out = provenance.differences(old, new, fields=fields, labels=("then", "now"))
    keys = sorted((set(old) | set(new)) - set(fields))

    def same(k):  # a model is the same when its content hash is
        if k == "model":
            return (old.get(k) or {}).get("hash") == (new.get(k) or {}).get("hash")
        return old.get(k) == new.get(k)

    return out + [f"{k}: {_describe(old.get(k))} then, {_describe(new.get(k))} now" for k in keys if not same(k)]


def _upgrade_settings(old):
    """Settings of an output begun by an older tagger, in today's fields (its embedding provenance rebuilt).

    Tag outputs before the provenance record held ``weights`` as one string
    (``vggish-sha1:…+pca+bfloat16``): the network and precision are read from
    it; ``+pca`` without the PCA parameters' id cannot be rebuilt.
    """
    if "model" not in old or "precision" in old or "weights" not in old:
        return old
    weights = str(old["weights"])
    if weights == params.FEATURE_SET:
        kind = "features"
    elif weights.startswith("melspec"):
        kind = "melspec"
    else:
        kind = "postprocessed" if "+pca" in weights.split("+")[1:] else "raw"
    record = provenance.of_legacy(
        weights=weights, kind=kind, pca=None, frontend=old.get("frontend") or {}, short_policy=old.get("short_policy")
    )
    return {**old, **record}


def check_resume(out, errors_file, meta_path, settings):
    """Refuse to continue an output made with other settings, or one whose settings are unknown.

    ``meta_path`` holds ``{"settings": ...}`` as the run that began ``out`` wrote it
    (``tag_to_file``, ``features_to_file``); an output begun without one is refused too.

    Returns
    -------
    dict
        The meta file as it was (``{}`` for an output not begun).
    """
    started = any(os.path.exists(p) and os.path.getsize(p) > 0 for p in (out, errors_file))
    if not started:
        return {}
    if not os.path.exists(meta_path):
        raise ParameterError(
            f"{out} exists but has no {os.path.basename(meta_path)}: it was written by an older tagger (or another"
            " program), so the settings it was made with are unknown and it cannot be continued safely; rerun with"
            " --overwrite to write it from scratch, or write to another --out"
        )
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        old = meta["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{meta_path}: unreadable ({exc}); rerun with --overwrite, or write to another --out") from exc
    try:
        old = _upgrade_settings(old)
    except DataError as exc:
        raise ParameterError(f"{out}: {exc}; rerun with --overwrite, or write to another --out") from exc
    diff = _differences(old, json.loads(json.dumps(settings)))
    if diff:
        raise ParameterError(
            f"{out} was made with other settings ({'; '.join(diff)}); rerun with --overwrite to replace it,"
            " or write to another --out"
        )
    return meta


class ResumableOutput:
    """The one resumable-output engine: lock, settings check, resume, rows, errors, summary.

    ``tagger tag``, ``tagger features`` and their errors files go through it
    (and the Beam writers use its quoting, :func:`delimited_line`, and its
    settings record). Records are appended and flushed one at a time; the
    settings are recorded in ``META`` (a rerun with others is refused unless
    ``overwrite``). A rerun skips the clips already written or listed in the
    errors file, keyed by the clip's absolute path (its track id's absolute
    form, so ``music``, ``./music/`` and ``$PWD/music`` name one clip). A full
    disk stops the run with a :class:`~tagger.exceptions.DataError` that names
    the file; what was written stays, and a rerun continues.

    Parameters
    ----------
    out : str
        The output the user named (its lock and meta file sit beside it).
    kind : {'csv', 'jsonl'}
        Format of the records file.
    settings : dict
        What the records depend on.
    fieldnames : sequence of str, optional
        CSV columns.
    rows_file : str, optional
        Where records are appended (default ``out``; a Parquet output collects them in a partial CSV).
    errors_file : str, optional
        Default ``OUT.errors.tsv``.
    overwrite : bool
        Start afresh.
    """

    def __init__(self, out, *, kind, settings, fieldnames=None, rows_file=None, errors_file=None, overwrite=False):
        self.out = os.fspath(out)
        self.kind, self.settings, self.overwrite = kind, settings, overwrite
        self.fieldnames = list(fieldnames) if fieldnames is not None else None
        self.rows_file = rows_file or self.out
        self.errors_file = errors_file or self.out + ".errors.tsv"
        self.meta_path = self.out + ".meta.json"
        self._lock = locks.exclusive(locks.output_lock_path(self.out), what=f"output {self.out}")
        self.done, self.failures, self.written, self.failed = set(), [], 0, 0
        self._rows = self._errors = None

    @staticmethod
    def key(path, cwd=None):
        """The resume key of a clip: its absolute, normalised path (relative paths taken from ``cwd``)."""
        path = os.fspath(path)
        return os.path.normpath(os.path.join(cwd or os.getcwd(), path))

    def __enter__(self):
        self._lock.__enter__()
        try:
            self._begin(__version__)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def _begin(self, version):
        os.makedirs(os.path.dirname(os.path.abspath(self.out)), exist_ok=True)
        if self.overwrite:
            for path in {self.out, self.rows_file, self.errors_file, self.meta_path}:
                if os.path.exists(path):
                    os.unlink(path)
        meta = check_resume(self.rows_file, self.errors_file, self.meta_path, self.settings)
        header, rows = read_records(self.rows_file, self.kind)
        if self.fieldnames is not None and header is not None and header != self.fieldnames:
            raise DataError(
                f"{self.out}: its columns {header} are not those of these settings {self.fieldnames}; rerun with"
                " --overwrite, or write to another --out"
            )
        self.failures = read_errors(self.errors_file)
        paths = [row["path"] for row in rows] + [path for path, _ in self.failures]
        then = meta.get("cwd") or os.getcwd()
        if then != os.getcwd() and any(not os.path.isabs(p) for p in paths):
            raise ParameterError(
                f"{self.out} was begun in the folder {then}, and its relative paths name files from there: continue it"
                " from that folder, or rerun with --overwrite, or write to another --out"
            )
        self.done = {self.key(p, then) for p in paths}
        self.failed = len(self.failures)
        write_json_atomic({"tagger": version, "settings": self.settings, "cwd": then}, self.meta_path)
        self._rows = open(self.rows_file, "a", newline="", **TEXT)
        self._errors = ErrorsWriter(self.errors_file)
        if self.kind == "csv" and header is None and self.fieldnames is not None:
            self._append(delimited_line(self.fieldnames) + "\r\n")

    def pending(self, items):
        """The ``(path, track_id)`` items not written before."""
        return [item for item in items if self.key(item[0]) not in self.done]

    def _append(self, text):
        try:
            self._rows.write(text)
            self._rows.flush()
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise no_space(
                    self.rows_file, exc, f"the {self.written} records finished by this run are kept"
                ) from exc
            raise

    def row(self, values):
        """Append one record: a dict (CSV: by ``fieldnames``; JSONL: as JSON) or a sequence (CSV)."""
        if self.kind == "jsonl":
            text = json.dumps(values)
        elif isinstance(values, dict):
            text = delimited_line([values.get(k, "") for k in self.fieldnames])
        else:
            text = delimited_line(values)
        self._append(text + ("\n" if self.kind == "jsonl" else "\r\n"))
        self.written += 1

    def close_rows(self):
        """Close the records file (before it is read whole, as a Parquet output's partial CSV is)."""
        self._rows.close()

    def error(self, path, message):
        """List one failed clip in the errors file."""
        self._errors.write(path, message)
        self.failed += 1

    def __exit__(self, *exc):
        try:
            for f in (self._rows, self._errors):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass
            if exc[0] is None and self.failed == 0 and os.path.exists(self.errors_file):
                os.unlink(self.errors_file)
        finally:
            self._lock.__exit__(*exc)


def parquet_path_columns(path):
    """``path`` and ``path_bytes`` of a Parquet row: Parquet strings are UTF-8, so the exact name travels as bytes.

    ``path`` is the name for reading (bytes that are not UTF-8 shown as U+FFFD); ``path_bytes`` is
    ``os.fsencode(path)``, the original bytes (``os.fsdecode`` gives the name back).
    """
    raw = os.fsencode(path)
    return {"path": raw.decode("utf-8", "replace"), "path_bytes": raw}


def read_table(path, *, what="table", **options):
    """A CSV/TSV table a person wrote (labels, truth, mapping, annotations) as a DataFrame, its text checked first.

    The file must be UTF-8 (a byte-order mark is dropped); anything else is
    refused naming the file, the byte offset and the encoding problem, rather
    than a parser traceback. ``options`` go to :func:`pandas.read_csv`.

    Raises
    ------
    DataError
        Missing, not UTF-8, or not parseable.
    """
    import pandas as pd

    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such {what}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: this {what} is not UTF-8 text (byte {exc.start}: {data[exc.start : exc.start + 4]!r}, {exc.reason});"
            " save it as UTF-8 (e.g. iconv -f latin1 -t utf-8) and rerun"
        ) from exc
    try:
        return pd.read_csv(io.StringIO(text), **options)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: unreadable {what} ({exc})") from exc


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


#: one redirect of file descriptor 2 at a time: two threads interleaving theirs would leave it on a closed file
_STDERR_REDIRECT = threading.Lock()


@contextlib.contextmanager
def filtered_stderr(noise):
    """File descriptor 2 into a temporary file for the block; then replay the lines ``noise`` does not match.

    What native libraries write there (TensorFlow's start-up lines, libmpg123's notes on a damaged MP3)
    cannot be caught from Python. ``noise`` is a compiled ``str`` pattern matched at each line's start;
    every other line (a real error) is written back, in order. Without a usable file descriptor 2 the
    block runs as it is.
    """
    with _STDERR_REDIRECT:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no usable stderr: nothing to filter
            yield
            return
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                    if not noise.match(line):
                        sys.stderr.write(line)
                sys.stderr.flush()
