"""librosa's numba kernels, compiled or loaded by one process at a time.

librosa compiles its kernels with numba's on-disk cache (``cache=True``): a
gufunc's wrapper and its kernel are two cache files, each written by whichever
process compiled last. Two processes compiling the same kernel at once (two
feature workers on a fresh install, two test workers) can leave the wrapper of
one beside the kernel of the other, and every later process that loads them
crashes with a segmentation fault, until the cache files are deleted. tagger
therefore imports librosa's compiling modules, and runs a warm-up of the
functions it calls, under one exclusive lock per numba cache
(:func:`lock_path`), once per process; after that, processes only read the
cache, which is safe at any concurrency.

>>> librosa = import_librosa()                  # librosa, its kernels ready
>>> librosa = import_librosa(warm=my_warm_up)   # and my_warm_up() run under the same lock, once

librosa code that tagger does not reach through here (a user's own calls in
another process) can still race with it; numba's cache is not
multiprocess-safe, and this lock is tagger's only.
"""

import importlib
import os
import tempfile

from .. import locks

__all__ = ["import_librosa", "lock_path"]

#: librosa's subpackages that compile gufuncs when imported (explicit signatures compile eagerly)
COMPILING_MODULES = ("librosa.core", "librosa.util", "librosa.feature", "librosa.beat", "librosa.decompose")
_WARMED = set()  # the warm-ups done in this process (None: the imports alone)


def lock_path():
    """The lock file beside the numba cache that librosa's kernels use.

    Returns
    -------
    str
        ``$NUMBA_CACHE_DIR/tagger-numba.lock`` when that variable is set; else
        ``tagger-numba.lock`` in librosa's own ``__pycache__`` folder when it
        is writable (numba caches there); else one per user in the temporary
        folder (numba then caches per user).
    """
    folder = os.environ.get("NUMBA_CACHE_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        return os.path.join(folder, "tagger-numba.lock")
    import librosa  # a lazy package: this import compiles nothing

    folder = os.path.join(os.path.dirname(librosa.__file__), "__pycache__")
    if os.path.isdir(folder) and os.access(folder, os.W_OK):
        return os.path.join(folder, "tagger-numba.lock")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"tagger-numba-{uid}.lock")


def import_librosa(warm=None):
    """librosa, with its kernels compiled or loaded under the cache's lock, once per process.

    Parameters
    ----------
    warm : callable, optional
        Called with no argument under the same lock, once per process for
        each function object: it should call the librosa functions the caller will use,
        on a short signal of the dtype it will use, so that kernels numba
        compiles on first call (those without explicit signatures) are
        compiled by one process at a time too.

    Returns
    -------
    module
        ``librosa``.
    """
    import librosa

    if warm in _WARMED and None in _WARMED:
        return librosa
    with locks.exclusive(lock_path(), what="librosa's numba cache", wait=True):
        if None not in _WARMED:
            for name in COMPILING_MODULES:
                importlib.import_module(name)
            _WARMED.add(None)
        if warm not in _WARMED:
            warm()
            _WARMED.add(warm)
    return librosa
