"""Decoding for the worker processes (no TensorFlow): a file's audio block by block or whole, and the loop
that runs a model's worker job (``target``: its frontend, e.g.
:func:`tagger.embedding.vggish.frontend.decode_messages`) over tasks.

A file is streamed block by block through a model's frontend, and its rows leave in chunks, so memory per
file stays bounded.
"""

import multiprocessing as mp
import os
import queue
import threading
from multiprocessing.reduction import ForkingPickler

import numpy as np

from ..exceptions import AudioError, TaggerError
from . import params
from .audio import info, iter_blocks, load
from .augment import Augmented, augment

__all__ = ["blocks", "load_source", "describe_error", "worker_loop"]


def describe_error(exc):
    return str(exc) if isinstance(exc, TaggerError) else f"{type(exc).__name__}: {exc}"


def _check_whole(path):
    """Refuse, from its header, a file too long to hold whole in memory (the paths that need all of it at once)."""
    _, _, seconds = info(path)
    if seconds > params.WHOLE_FILE_MAX_SECONDS:
        raise AudioError(
            f"{os.fspath(path)}: {seconds:.0f} s of audio; features, course log-mel patches and augmentation hold a"
            f" whole file in memory (about 3.5 MB per second for the features), so files over"
            f" {params.WHOLE_FILE_MAX_SECONDS:.0f} s are refused: cut it into shorter clips first"
        )


def blocks(source, sample_rate):
    """A file's audio block by block; an :class:`tagger.embedding.augment.Augmented` task's copy as one block."""
    if not isinstance(source, Augmented):
        yield from iter_blocks(source, sample_rate=sample_rate)
        return
    import json

    _check_whole(source.path)
    y = load(source.path, sample_rate=sample_rate)
    yield augment(y, sample_rate, seed=source.seed, settings=json.loads(source.settings))


def load_source(source, sample_rate):
    """A file's whole audio (or an augmented copy of it), mono float32 at ``sample_rate``.

    Raises
    ------
    AudioError
        Besides decoding errors: a file longer than :data:`tagger.embedding.params.WHOLE_FILE_MAX_SECONDS`.
    """
    if not isinstance(source, Augmented):  # an augmented copy's task checks its file itself (blocks)
        _check_whole(source)
    parts = list(blocks(source, sample_rate))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _exit_with_parent():
    """Daemon thread: end this worker as soon as its parent is gone (even after SIGKILL)."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch():
        parent.join()  # returns when the parent's sentinel closes
        os._exit(0)

    threading.Thread(target=watch, name="tagger-parent-watch", daemon=True).start()


class _Sender:
    """A worker's messages to its parent through the worker's own pipe, written by a thread so that decoding goes
    on meanwhile; at most ``prefetch`` wait to be written.

    Pickled at :meth:`put` (a message may not change later). Only this worker holds the pipe's write end, so if it
    dies in the middle of a message the parent reads an end of file, not a wait for bytes that will not come.
    """

    def __init__(self, conn, prefetch):
        self.conn = conn
        self.waiting = queue.Queue(maxsize=max(1, int(prefetch)))
        self.thread = threading.Thread(target=self._write, name="tagger-sender", daemon=True)
        self.thread.start()

    def _write(self):
        while (data := self.waiting.get()) is not None:
            try:
                self.conn.send_bytes(data)
            except OSError:  # the parent closed its end (it stopped reading, or it is gone): nothing left to do
                os._exit(0)

    def put(self, message):
        self.waiting.put(ForkingPickler.dumps(message))

    def close(self):
        """Write what waits, then close the pipe."""
        self.waiting.put(None)
        self.thread.join()
        self.conn.close()


def worker_loop(tasks, conn, options, target, *, slots=None, holding=None, prefetch=8):
    """Process entry point: take ``(index, path)`` tasks until ``None``; send the messages of ``target(index, path,
    **options)`` through ``conn`` (this worker's pipe to its parent).

    ``target`` is a module-level generator function (it travels to the spawned
    process by name): a model's decode job (:func:`tagger.embedding.vggish.frontend.decode_messages`), or another job with the same
    message contract (``"done"`` or ``"error"`` last), such as the handcrafted
    features of :func:`tagger.embedding.features.feature_messages`.

    ``holding`` is ``(shared int array, this worker's position)``: before each file the worker writes its index
    there, so that the parent knows which file a crashed worker held (the last it began: a message sent just
    before a hard crash can die with the worker). With ``slots`` (:class:`tagger.embedding.slots.SharedSlots`), a
    message's large arrays travel through shared memory instead of the pipe. ``prefetch``: messages made and not
    yet written. A worker whose parent died (killed, even with SIGKILL) exits at once instead of lingering on a
    pipe nobody reads.
    """
    _exit_with_parent()
    # one BLAS thread per worker: the network owns the other cores, and a
    # spinning BLAS pool in every worker costs more than it saves
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    sender = _Sender(conn, prefetch)
    while True:
        try:
            task = tasks.get()
        except (EOFError, OSError):
            break
        if task is None:
            break
        index, path = task
        if holding is not None:
            holding[0][holding[1]] = index
        for message in target(index, path, **options):
            sender.put(message if slots is None else slots.pack(message))
    sender.close()
