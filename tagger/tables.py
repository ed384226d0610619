"""Tables a person wrote (labels, truth, mappings) read with their text checked first, and Parquet path columns."""

import io
import os

from .exceptions import DataError

__all__ = ["read_table", "parquet_path_columns"]


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
