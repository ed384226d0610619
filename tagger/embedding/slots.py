"""The decode workers' hand-over through shared memory: a message's large arrays travel in slots of memory that the
workers and the network's process both map, and the worker's pipe carries only where they are.

A worker's message of 32 patches is 0.8 MB of log-mel, or 2 MB of the audio the device frontend takes. Pickled
through a pipe, it is copied four times and written in 64 KB pieces, which holds one consumer to a few hundred
clips a second (``benchmarks/handover.py``): less than a GPU embeds. In a slot it is copied twice (into the slot,
out of it) and the pipe carries a few dozen bytes. The free slots are also the workers' back-pressure: a worker
waits for one while the network's process is busy.

The slots live in one anonymous shared file (``memfd_create``): it does not count against ``/dev/shm`` (64 MB by
default in a Docker container), it needs no name, and it is gone once the last process that maps it ends, killed
or not. Where there is no ``memfd_create`` (not Linux), :func:`make_slots` gives ``None`` and messages travel pickled
through the pipe.
"""

import mmap
import os
import queue
from multiprocessing import reduction
from typing import NamedTuple

import numpy as np

__all__ = ["SharedSlots", "make_slots", "FREE_SLOT_WAIT_S", "MIN_SLOT_ARRAY_BYTES", "SLOT_BYTES"]

SLOT_BYTES = 4 << 20
"""Bytes per slot: a message of up to 64 patches of patch audio (64 x 15,600 float32 = 4.0 MB) fits one."""

MIN_SLOT_ARRAY_BYTES = 64 << 10
"""Arrays smaller than this travel pickled: below a pipe's buffer a slot saves nothing."""

FREE_SLOT_WAIT_S = 1.0
"""How long a worker waits for a free slot before it sends the array pickled instead. Waiting is the workers'
back-pressure while the network's process is busy; the limit is for slots that never come back (those of messages
that died with a crashed worker)."""


class _InSlot(NamedTuple):
    """An array's place in a message while it sits in slot ``slot``."""

    slot: int
    shape: tuple
    dtype: str


class SharedSlots:
    """``n`` slots of ``slot_bytes`` bytes in one anonymous shared memory file, and a queue of the free ones.

    Made in the network's process before the workers start; it travels to spawned workers as their arguments do
    (its file descriptor is passed the way multiprocessing passes its pipes). A worker :meth:`pack` s a message
    before it sends it; the network's process :meth:`unpack` s it after it receives it, which copies
    the arrays out and frees their slots.

    Parameters
    ----------
    ctx : multiprocessing context
        The workers' (``spawn``).
    n : int
        Slots: the messages that may be on their way at once (made, not yet taken by the network's process);
        a worker that finds none free waits for one, up to ``wait_s``.
    slot_bytes : int
        Bytes per slot; a larger array travels pickled.
    wait_s : float
        Seconds a worker waits for a free slot before it sends an array pickled.
    """

    def __init__(self, ctx, n, slot_bytes=SLOT_BYTES, *, wait_s=FREE_SLOT_WAIT_S):
        self.n, self.slot_bytes, self.wait_s = int(n), int(slot_bytes), float(wait_s)
        self._fd = os.memfd_create("tagger-handover", os.MFD_CLOEXEC)
        os.ftruncate(self._fd, self.n * self.slot_bytes)  # pages are only taken as slots are written
        self._map = mmap.mmap(self._fd, self.n * self.slot_bytes)
        self.free = ctx.Queue()
        for slot in range(self.n):
            self.free.put(slot)
        self.n_in_slots = 0  # arrays that came through a slot (this process's count)

    def __reduce__(self):
        return _attach, (reduction.DupFd(self._fd), self.n, self.slot_bytes, self.wait_s, self.free)

    def _view(self, slot, shape, dtype):
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self._map, dtype=dtype, count=count, offset=slot * self.slot_bytes).reshape(shape)

    def _fits(self, value):
        return (
            isinstance(value, np.ndarray)
            and not value.dtype.hasobject
            and MIN_SLOT_ARRAY_BYTES <= value.nbytes <= self.slot_bytes
        )

    def pack(self, message):
        """A worker's message with each large array written into a free slot and replaced by its place.

        Parameters
        ----------
        message : tuple
            A worker message, e.g. ``("patches", index, patches, timestamps)``.

        Returns
        -------
        tuple
            The same message; arrays of :data:`MIN_SLOT_ARRAY_BYTES` up to ``slot_bytes`` bytes are in slots
            when one is free within ``wait_s``, the rest as they were.
        """
        out = []
        for value in message:
            if self._fits(value):
                try:
                    slot = self.free.get(timeout=self.wait_s)
                except queue.Empty:
                    out.append(value)
                    continue
                self._view(slot, value.shape, value.dtype)[...] = value
                value = _InSlot(slot, value.shape, value.dtype.str)
            out.append(value)
        return tuple(out)

    def unpack(self, message):
        """The message as the worker made it: each array in a slot copied out, and its slot freed."""
        out = []
        for value in message:
            if isinstance(value, _InSlot):
                array = self._view(value.slot, value.shape, value.dtype).copy()
                self.free.put(value.slot)
                self.n_in_slots += 1
                value = array
            out.append(value)
        return tuple(out)

    def close(self):
        """Unmap the slots and close the file (the memory is freed once no worker maps it either)."""
        self._map.close()
        os.close(self._fd)
        self.free.cancel_join_thread()  # free slots nobody will take: do not wait at exit to flush them
        self.free.close()


def _attach(dup_fd, n, slot_bytes, wait_s, free):
    """The slots in a spawned worker: map the file descriptor that came with the process."""
    slots = SharedSlots.__new__(SharedSlots)
    slots.n, slots.slot_bytes, slots.wait_s, slots.free, slots.n_in_slots = n, slot_bytes, wait_s, free, 0
    slots._fd = dup_fd.detach()
    slots._map = mmap.mmap(slots._fd, n * slot_bytes)
    return slots


def make_slots(ctx, n, slot_bytes=SLOT_BYTES, *, wait_s=FREE_SLOT_WAIT_S):
    """:class:`SharedSlots` where the platform has ``memfd_create`` and can make the file, else ``None``."""
    if not hasattr(os, "memfd_create"):
        return None
    try:
        return SharedSlots(ctx, n, slot_bytes, wait_s=wait_s)
    except OSError:  # no memory for the file's table, or memfd refused (a seccomp profile): pipes alone
        return None
