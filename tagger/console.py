"""What long work shows on the console: the progress bar, and native libraries' noise kept off standard error."""

import contextlib
import os
import sys
import tempfile
import threading

__all__ = ["progress_bar", "filtered_stderr"]


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
_STDERR_REDIRECT = threading.RLock()  # re-entered where TensorFlow loads inside another filtered block


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
