"""The decode workers' hand-over through shared memory (tagger.embedding.slots): the same messages as the queue."""

import multiprocessing as mp
import threading

import numpy as np
import pytest
from helpers import array_messages, crashing_messages

from tagger.embedding import pipeline, slots

needs_memfd = pytest.mark.skipif(not hasattr(slots.os, "memfd_create"), reason="shared slots need memfd_create (Linux)")


@pytest.fixture
def shared():
    made = slots.SharedSlots(mp.get_context("spawn"), 2, slot_bytes=1 << 20, wait_s=0.01)
    yield made
    made.close()


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
        else:
            assert x == y


@needs_memfd
def test_large_arrays_go_through_a_slot_and_the_rest_as_they_are(shared):
    rng = np.random.default_rng(0)
    large = rng.standard_normal((8, 15600)).astype(np.float32)  # 0.5 MB: a slot
    small = np.arange(8) * 0.96  # pickled
    too_large = np.zeros((20, 15600), np.float32)  # 1.2 MB > the 1 MB slot: pickled
    objects = np.array([{"a": 1}] * 20000, dtype=object)  # never in a slot
    message = ("patches", 3, large, small, too_large, objects)
    packed = shared.pack(message)
    assert [type(v).__name__ for v in packed[2:]] == ["_InSlot", "ndarray", "ndarray", "ndarray"]
    assert packed[3] is small and packed[4] is too_large and packed[5] is objects
    unpacked = shared.unpack(packed)
    _same(unpacked, message)
    assert shared.n_in_slots == 1
    assert shared.unpack(("done", 3, 1.0, [])) == ("done", 3, 1.0, [])


@needs_memfd
def test_without_a_free_slot_the_array_travels_pickled(shared):
    block = np.ones((4, 15600), np.float32)
    held = [shared.pack(("patches", i, block)) for i in range(2)]  # both slots taken, none freed yet
    assert all(type(m[2]).__name__ == "_InSlot" for m in held)
    third = shared.pack(("patches", 2, block * 3))
    assert isinstance(third[2], np.ndarray)
    assert np.array_equal(shared.unpack(held[1])[2], block)  # frees its slot: the next goes through it
    fourth = shared.pack(("patches", 3, block * 4))
    assert fourth[2].slot == held[1][2].slot and np.array_equal(shared.unpack(fourth)[2], block * 4)


@needs_memfd
@pytest.mark.integration
def test_spawned_workers_hand_over_the_same_messages_either_way(monkeypatch):
    made = []

    def recording(*args, **kwargs):
        made.append(slots.make_slots(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(pipeline, "make_slots", recording)
    paths = ["a", "b", "c"]
    got = {}
    for shared_memory in (True, False):
        messages = list(
            pipeline.iter_messages(paths, array_messages, {"n": 12}, workers=2, shared_memory=shared_memory)
        )
        got[shared_memory] = {i: [m for m in messages if m[1] == i] for i in range(len(paths))}
    for i, path in enumerate(paths):
        expected = list(array_messages(i, path, n=12))
        for shared_memory in (True, False):
            for e, g in zip(expected, got[shared_memory][i], strict=True):
                _same(e, g)
    assert len(made) == 1 and made[0].n == 2 * 8 + 2
    fits = sum(
        1
        for i, p in enumerate(paths)
        for m in array_messages(i, p, n=12)
        if m[0] == "patches" and m[2].nbytes <= slots.SLOT_BYTES
    )
    assert 0 < made[0].n_in_slots <= fits


def _within(seconds, *args, **kwargs):
    """``list(pipeline.iter_messages(*args, **kwargs))``, failing instead of hanging past ``seconds``."""
    out = []
    thread = threading.Thread(target=lambda: out.extend(pipeline.iter_messages(*args, **kwargs)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the hand-over hung for {seconds} s on a worker that died"
    return out


@pytest.mark.integration
def test_a_worker_that_dies_on_a_file_fails_that_file_and_the_others_arrive_whole():
    paths = ["a", "crash", "b", "c", "d"]
    messages = _within(120, paths, crashing_messages, {"n": 6}, workers=2)
    ends = {m[1]: m for m in messages if m[0] in ("done", "error")}
    assert sorted(ends) == list(range(len(paths)))
    assert ends[1] == ("error", 1, "decoder process crashed on this file")
    assert [m for m in messages if m[1] == 1] == [ends[1]]  # its half-written message read as the pipe's end
    for i, path in enumerate(paths):
        if path != "crash":
            for e, g in zip(array_messages(i, path, n=6), [m for m in messages if m[1] == i], strict=True):
                _same(e, g)


@pytest.mark.integration
def test_the_only_worker_dying_on_the_first_file_is_not_taken_for_workers_that_never_started():
    """It leaves half a message; its files are failed, never decoded in this process (which the same decoder would
    kill)."""
    messages = _within(120, ["crash", "a"], crashing_messages, {"n": 2}, workers=1)
    assert messages == [
        ("error", 0, "decoder process crashed on this file"),
        ("error", 1, "not decoded: every decoder process crashed"),
    ]
