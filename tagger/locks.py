"""One writer per output, cache and run folder: advisory ``flock`` locks that die with their process.

A writer opens a lock file (``OUT.lock`` beside an output, ``.tagger.lock``
inside a cache or run folder) and takes an exclusive, non-blocking
:func:`fcntl.flock` on it, then records its pid and command there. A second
writer fails at once with a :class:`~tagger.exceptions.DataError` naming the
file and the holder. The kernel releases the lock when the holder's process
ends, however it ends (SIGKILL included), so a stale lock file never blocks
the next run; the file itself stays (removing it would race with a waiting
process).
"""

import contextlib
import fcntl
import os
import socket
import sys

from .exceptions import DataError

__all__ = ["LOCK_NAME", "exclusive", "folder_lock_path", "output_lock_path"]

LOCK_NAME = ".tagger.lock"


def folder_lock_path(folder):
    """Lock file of a cache or run folder: ``<folder>/.tagger.lock``."""
    return os.path.join(os.fspath(folder), LOCK_NAME)


def output_lock_path(path):
    """Lock file of an output file: ``<path>.lock`` beside it."""
    return os.fspath(path) + ".lock"


def _holder(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read().strip()
    except OSError:
        return "another process"
    return text.splitlines()[0] if text else "another process"


@contextlib.contextmanager
def exclusive(lock_path, *, what, wait=False):
    """Hold an exclusive lock on ``lock_path`` for the ``with`` block.

    Parameters
    ----------
    lock_path : str
        The lock file (created when missing; its folder must exist).
    what : str
        What the lock protects, for the message (``"output tags.csv"``).
    wait : bool
        Wait for a holder to let go instead of failing (for short critical
        sections that every process passes through, never for writers).

    Raises
    ------
    DataError
        Another live process holds the lock (and ``wait`` is false): the
        message names ``what``, the lock file and the holder's pid, host and
        command.
    """
    lock_path = os.fspath(lock_path)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise DataError(f"{what}: cannot create the lock file {lock_path} ({exc.strerror})") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(
                f"{what} is in use by {_holder(lock_path)} (lock {lock_path}); wait for it to finish, or stop it"
            ) from None
        command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300]
        try:  # who holds it, for another run's message; a disk with no space left keeps the lock without it
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}: {command}\n".encode("utf-8", "replace"))
        except OSError:
            pass
        yield lock_path
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
