"""Files -> embeddings, in input order: parallel decoding, full network batches.

Worker processes (spawned, TensorFlow-free) decode and patch files and send
them back, each through its own pipe; the parent packs patches from several files into batches of
exactly ``batch_size`` for the network and hands each finished track back in
input order. Bad files come back as failures; the run goes on.
"""

import collections
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import ParameterError, TaggerError, TaggerWarning
from .augment import Augmented
from .decode import worker_loop
from .slots import make_slots

__all__ = ["TrackResult", "iter_embeddings", "iter_messages", "default_workers", "refuse_in_bootstrapping_child"]

_MAIN_GUARD_HELP = (
    "decode workers are spawned processes, which re-run your script: put the code that calls tagger under"
    ' `if __name__ == "__main__":`, or pass workers=0 to decode in the calling process'
)


def refuse_in_bootstrapping_child():
    """Raise :class:`TaggerError` when called while a spawned process is still importing its parent's script.

    That happens when a script calls tagger at import time, without a main
    guard: each decode worker re-runs the script and would load a network and
    start workers of its own. Failing at once lets the parent notice and
    decode in its own process instead.
    """
    if getattr(mp.current_process(), "_inheriting", False):
        raise TaggerError(f"tagger was called while this process was starting as a decode worker; {_MAIN_GUARD_HELP}")


@dataclass
class TrackResult:
    """One input's outcome.

    Attributes
    ----------
    index : int
        Position in the input list.
    path : str
    embedding : np.ndarray, shape (T, 128), float32, or None on failure
        Raw network output.
    timestamps : np.ndarray, shape (T,), or None
    duration : float or None
        Seconds of audio decoded.
    error : str or None
        Why the file failed.
    warnings : list of str
    """

    index: int
    path: str
    embedding: np.ndarray = None
    timestamps: np.ndarray = None
    duration: float = None
    error: str = None
    warnings: list = field(default_factory=list)

    @property
    def ok(self):
        return self.error is None


def _task(path):
    """A worker task: a path as a string, or an augmented copy's task as it is."""
    return path if isinstance(path, Augmented) else os.fspath(path)


def default_workers(*, gpu=False):
    """Decode processes: one per core beyond the first (the network's), or every core when a GPU runs the network."""
    cores = os.cpu_count() or 2
    return cores if gpu else max(1, cores - 1)


class _Track:
    """One file on its way: embedding parts from the network, until decoded and every patch is back."""

    __slots__ = ("emb", "times", "in_flight", "decoded", "result", "row_shape")

    def __init__(self, result, row_shape):
        self.row_shape = row_shape
        self.emb, self.times = [], []
        self.in_flight = 0
        self.decoded = False
        self.result = result

    def finish(self):
        """Concatenate the parts into the result (an error result keeps none)."""
        if self.result.error is None:
            r = self.result
            r.embedding = np.concatenate(self.emb) if self.emb else np.zeros((0, *self.row_shape), np.float32)
            r.timestamps = np.concatenate(self.times) if self.times else np.zeros(0)
        self.emb = self.times = None
        return self.result


class _Batcher:
    """Packs patches of many tracks into fixed-size network batches; hands each track its rows back."""

    def __init__(self, run, batch_size, tracks):
        self.run, self.batch_size, self.tracks = run, batch_size, tracks
        self.queue = collections.deque()  # (index, patches)
        self.size = 0

    def add(self, index, patches, times):
        track = self.tracks[index]
        track.times.append(times)
        track.in_flight += len(patches)
        self.queue.append((index, patches))
        self.size += len(patches)
        while self.size >= self.batch_size:
            self._step(self.batch_size)

    def flush(self):
        while self.size:
            self._step(min(self.size, self.batch_size))

    def _step(self, n):
        parts, owners, need = [], [], n
        while need:
            index, patches = self.queue[0]
            take = patches[:need]
            parts.append(take)
            owners.append((index, len(take)))
            if len(take) == len(patches):
                self.queue.popleft()
            else:
                self.queue[0] = (index, patches[need:])
            need -= len(take)
        out = self.run(np.concatenate(parts) if len(parts) > 1 else parts[0])
        self.size -= n
        start = 0
        for index, count in owners:
            track = self.tracks[index]
            track.emb.append(out[start : start + count])
            track.in_flight -= count
            start += count


class _InOrder:
    """Worker messages in, finished :class:`TrackResult` out in input order, patches batched on the way."""

    def __init__(self, paths, run, batch_size, row_shape):
        self.tracks = {i: _Track(TrackResult(index=i, path=os.fspath(p)), row_shape) for i, p in enumerate(paths)}
        self.batcher = _Batcher(run, batch_size, self.tracks)
        self.n, self.next_out, self.n_decoded = len(paths), 0, 0

    def take(self, message):
        """Take one worker message; yield the results it completes."""
        kind, index = message[0], message[1]
        if kind == "patches":
            self.batcher.add(index, message[2], message[3])
            return
        track = self.tracks[index]
        track.decoded = True
        self.n_decoded += 1
        if kind == "done":
            track.result.duration, track.result.warnings = message[2], message[3]
        else:
            track.result.error = message[2]
        if self.n_decoded == self.n:  # nothing more will come: run the last, partial batch
            self.batcher.flush()
        yield from self.ready()

    def ready(self):
        """Results, in input order, whose file is decoded and whose every patch came back from the network."""
        while self.next_out < self.n:
            track = self.tracks[self.next_out]
            if not (track.decoded and track.in_flight == 0):
                return
            del self.tracks[self.next_out]
            self.next_out += 1
            yield track.finish()

    def end(self):
        self.batcher.flush()
        yield from self.ready()


def iter_embeddings(paths, run, *, target, target_options, row_shape, batch_size=64, workers=None, prefetch=8):
    """Embed files; yield one :class:`TrackResult` per path, in input order.

    Parameters
    ----------
    paths : sequence of str
    run : callable
        ``run(patches (n, ...) float32) -> (n, *row_shape) float32``, the network (VGGish: (n, 96, 64) -> (n, 128)).
    target : callable
        The model's worker job, a module-level generator ``target(index, path, **target_options)`` yielding
        ``("patches", index, patches, timestamps)`` zero or more times, then ``("done", index, duration_s,
        [warning texts])`` or ``("error", index, reason)`` (VGGish's:
        :func:`tagger.embedding.vggish.frontend.decode_messages`).
    target_options : dict
        Its keyword settings (picklable).
    row_shape : tuple of int
        One output row's shape (a track with no patches gets ``(0, *row_shape)``).
    batch_size : int
        Patches per network call; every call but the last is full.
    workers : int, optional
        Decode processes; 0 decodes in this process. Default :func:`default_workers`.
    prefetch : int
        Messages buffered per worker (bounds memory).

    Yields
    ------
    TrackResult
    """
    if batch_size < 1:
        raise ParameterError(f"batch_size={batch_size} must be >= 1")
    workers = default_workers() if workers is None else int(workers)
    if workers < 0:
        raise ParameterError(f"workers={workers} must be >= 0")
    paths = [_task(p) for p in paths]
    assembly = _InOrder(paths, run, batch_size, tuple(row_shape))
    for message in iter_messages(paths, target, dict(target_options), workers=workers, prefetch=prefetch):
        yield from assembly.take(message)
    yield from assembly.end()


def iter_messages(paths, target, options, *, workers=None, prefetch=8, shared_memory=True):
    """Run ``target(index, path, **options)`` for every path in worker processes; yield its messages.

    The engine under :func:`iter_embeddings` and :func:`tagger.embedding.features.iter_features`:
    spawned, TensorFlow-free workers (:func:`tagger.embedding.decode.worker_loop`), each with its own pipe
    back (and on Linux shared memory for large arrays), and one guarantee: every index ends with exactly one
    ``("done", index, ...)`` or ``("error", index, reason)`` message, also when
    a worker crashes on a file (that file at once, and any that no worker is left to
    take, get an error; the other workers go on). Messages of different files interleave; a file's own
    messages keep their order.

    Parameters
    ----------
    paths : sequence of str
    target : callable
        Module-level generator function ``(index, path, **options)`` yielding
        tuples ``(kind, index, ...)``, ``"done"`` or ``"error"`` last.
    options : dict
        Keyword settings of ``target`` (picklable).
    workers : int, optional
        Processes; 0 runs ``target`` in this process. Default :func:`default_workers`.
    prefetch : int
        Messages each worker may have made and not yet handed over (bounds memory).
    shared_memory : bool
        Large arrays travel from the workers in shared memory (:mod:`tagger.embedding.slots`, Linux), the rest
        of each message through the worker's pipe; ``False``: whole messages pickled through the pipe.

    Yields
    ------
    tuple
    """
    workers = default_workers() if workers is None else int(workers)
    if workers < 0:
        raise ParameterError(f"workers={workers} must be >= 0")
    finished = set()

    def run_here(indices):
        for index in indices:
            for message in target(index, paths[index], **options):
                yield message

    if workers == 0 or not paths:
        yield from run_here(range(len(paths)))
        return

    ctx = mp.get_context("spawn")
    tasks = ctx.Queue()
    for item in enumerate(paths):
        tasks.put(item)
    n_workers = min(workers, len(paths))
    for _ in range(n_workers):
        tasks.put(None)
    # large arrays travel in shared memory: a slot for every message that can be waiting or being sent
    slots = make_slots(ctx, max(2, prefetch * n_workers) + n_workers) if shared_memory else None
    holding = ctx.Array("q", [-1] * n_workers, lock=False)  # the file each worker holds: blamed if it dies
    # one pipe per worker, whose write end only that worker keeps: a worker that dies in the middle of a message
    # leaves an end of file to read, never a wait for bytes that will not come (a shared queue would hang)
    pipes = [ctx.Pipe(duplex=False) for _ in range(n_workers)]
    procs = [
        ctx.Process(
            target=worker_loop,
            args=(tasks, send, options, target),
            kwargs=dict(slots=slots, holding=(holding, k), prefetch=prefetch),
            daemon=True,
        )
        for k, (_, send) in enumerate(pipes)
    ]
    for proc in procs:
        proc.start()
    readers = {}
    for k, (receive, send) in enumerate(pipes):
        send.close()
        readers[receive] = k
    fallback = False
    try:
        while len(finished) < len(paths) and readers:
            for reader in mp_connection.wait(list(readers)):
                try:
                    message = reader.recv()
                except (EOFError, OSError):  # that worker is gone: the file it held (if unfinished) crashed it
                    index = holding[readers.pop(reader)]
                    reader.close()
                    if index >= 0 and index not in finished:
                        finished.add(index)
                        yield ("error", index, "decoder process crashed on this file")
                    continue
                if slots is not None:
                    message = slots.unpack(message)
                if message[0] in ("done", "error"):
                    finished.add(message[1])
                yield message
        if len(finished) < len(paths):
            if all(i < 0 for i in holding):
                fallback = True  # no worker ever began a file (an unguarded script): run here
            else:
                for index in range(len(paths)):
                    if index not in finished:
                        finished.add(index)
                        yield ("error", index, "not decoded: every decoder process crashed")
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=5)
        for reader in readers:
            reader.close()
        if slots is not None:
            slots.close()
    if fallback:
        warnings.warn(
            f"decode worker processes could not start ({_MAIN_GUARD_HELP}); decoding in this process instead",
            TaggerWarning,
            stacklevel=3,
        )
        yield from run_here([i for i in range(len(paths)) if i not in finished])
