"""Expensive test fixtures made once: a folder built once per key, shared by every process that asks for it.

The fixture VGGish weights (two checkpoints and a SavedModel, about a minute to write) and the prepared
AudioSet release (22,160 cache entries, minutes) are session fixtures; under pytest-xdist each worker has its
own session, and CI runs a second lane (``KERAS_BACKEND=jax``). Built here, they are made once per key in
``$TAGGER_TEST_CACHE`` (default ``.test-cache/`` in the checkout, ignored by git) and then only read:

- the key is a hash of what the folder is made from (the code that writes it, its settings, the input files'
  names and sizes), so a change to any of them builds a new folder instead of serving a stale one;
- one process builds while the others wait on a ``flock`` (released by the kernel if the builder dies);
- the folder is built under a temporary name and renamed into place with a ``.complete`` marker written last,
  so a killed build leaves nothing that is ever served;
- its files are made read-only, so a test that writes into a shared fixture fails instead of changing what
  the next test reads (for a user other than root: root writes anyway), and the marker holds each file's size
  and modification time: a folder whose files no longer match is built again, never served.
"""

import contextlib
import fcntl
import hashlib
import os
import pathlib
import shutil
import stat

ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = pathlib.Path(os.environ.get("TAGGER_TEST_CACHE", ROOT / ".test-cache"))
COMPLETE = ".complete"


def code_hash(*paths):
    """SHA-256 over the text of ``paths`` (files, or folders read as all their ``*.py`` files), relative to the
    checkout; what a cached folder's key names as the code that builds it."""
    digest = hashlib.sha256()
    for path in paths:
        path = ROOT / path
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(ROOT)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def files_hash(folder):
    """SHA-256 over the names and sizes of the files under ``folder`` (the shared data is never edited in place:
    a new release changes names or sizes)."""
    digest = hashlib.sha256()
    for file in sorted(pathlib.Path(folder).rglob("*")):
        if file.is_file():
            digest.update(f"{file.relative_to(folder)}\0{file.stat().st_size}\0".encode())
    return digest.hexdigest()


def _read_only(folder):
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _remove(folder):
    if folder.exists():
        for path in [folder, *folder.rglob("*")]:  # read-only files in a folder still go, the folders need +w
            if path.is_dir() and not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR)
        shutil.rmtree(folder)


@contextlib.contextmanager
def _locked(path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _manifest(folder):
    """Each file's path, size and modification time under ``folder`` (the marker excepted), as text."""
    rows = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != COMPLETE:
            info = path.stat()
            rows.append(f"{path.relative_to(folder)}\t{info.st_size}\t{info.st_mtime_ns}")
    return "\n".join(rows)


def _intact(folder):
    marker = folder / COMPLETE
    return marker.exists() and marker.read_text().split("\n\n", 1)[-1] == _manifest(folder)


def cached_folder(name, key, build):
    """The folder ``build(folder)`` fills for ``key``, built at most once across processes; its path.

    Parameters
    ----------
    name : str
        A readable prefix for the folder (``weights``, ``audioset``).
    key : str
        Everything the contents depend on, as text (hashed into the folder's name).
    build : callable
        ``build(folder)`` writes the contents into the (existing, empty) ``folder``.
    """
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    target = CACHE / f"{name}-{digest}"
    if _intact(target):
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with _locked(CACHE / f"{name}-{digest}.lock"):
        if _intact(target):  # built by another process while this one waited
            return target
        _remove(target)  # no marker (a killed build) or files changed since: never served
        partial = CACHE / f".{name}-{digest}.{os.getpid()}"
        _remove(partial)
        partial.mkdir()
        build(partial)
        _read_only(partial)
        (partial / COMPLETE).write_text(f"{key}\n\n{_manifest(partial)}")
        partial.rename(target)
    return target
