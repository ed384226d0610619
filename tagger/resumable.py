"""The one resumable-output engine: an output that grows a record at a time, refuses other settings, resumes.

``tagger tag`` and ``tagger features`` write through :class:`ResumableOutput`;
how two runs' settings compare is the caller's rule, passed in (``compare``),
so this ground-floor module imports no step of the flow.
"""

import json
import os

from . import locks
from .exceptions import DataError, ParameterError
from .records import (
    NO_SPACE,
    TEXT,
    ErrorsWriter,
    delimited_line,
    no_space,
    read_errors,
    read_records,
    write_json_atomic,
)
from .version import __version__

__all__ = ["check_resume", "ResumableOutput"]


def check_resume(out, errors_file, meta_path, settings, *, compare):
    """Refuse to continue an output made with other settings, or one whose settings are unknown.

    ``meta_path`` holds ``{"settings": ...}`` as the run that began ``out`` wrote it
    (``tag_to_file``, ``features_to_file``); an output begun without one is refused too. ``compare(old, new)``
    lists the settings that differ as readable lines (the embedding step's rule,
    :func:`tagger.embedding.provenance.settings_differences`, which also reads an older tagger's settings); a
    :class:`~tagger.exceptions.DataError` it raises means the old settings cannot be read.

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
        diff = compare(old, json.loads(json.dumps(settings)))
    except DataError as exc:
        raise ParameterError(f"{out}: {exc}; rerun with --overwrite, or write to another --out") from exc
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
    compare : callable
        ``compare(old, new) -> list of str``: the settings that differ (see :func:`check_resume`).
    fieldnames : sequence of str, optional
        CSV columns.
    rows_file : str, optional
        Where records are appended (default ``out``; a Parquet output collects them in a partial CSV).
    errors_file : str, optional
        Default ``OUT.errors.tsv``.
    overwrite : bool
        Start afresh.
    """

    def __init__(
        self, out, *, kind, settings, compare, fieldnames=None, rows_file=None, errors_file=None, overwrite=False
    ):
        self.out = os.fspath(out)
        self.kind, self.settings, self.compare, self.overwrite = kind, settings, compare, overwrite
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
        os.makedirs(os.path.dirname(os.path.abspath(self.out)), exist_ok=True)  # its lock file sits beside it
        self._lock.__enter__()
        try:
            self._begin(__version__)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def _begin(self, version):
        if self.overwrite:
            for path in {self.out, self.rows_file, self.errors_file, self.meta_path}:
                if os.path.exists(path):
                    os.unlink(path)
        meta = check_resume(self.rows_file, self.errors_file, self.meta_path, self.settings, compare=self.compare)
        header, rows = read_records(self.rows_file, self.kind, truncate=True)  # the lock holder trims a killed tail
        if self.fieldnames is not None and header is not None and header != self.fieldnames:
            raise DataError(
                f"{self.out}: its columns {header} are not those of these settings {self.fieldnames}; rerun with"
                " --overwrite, or write to another --out"
            )
        self.failures = read_errors(self.errors_file, truncate=True)
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
            if exc.errno in NO_SPACE:
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
