"""How fast decode workers can hand patches to the network's process: spawned producers, one consumer, the
pipeline's own hand-over (:func:`tagger.embedding.pipeline.iter_messages`), messages of 32 patches, per payload
and transport.

    python benchmarks/handover.py [--messages 2000] [--workers 1]

Payloads: the reference frontend's log-mel patches (32 x 96 x 64 float32), the device frontend's patch audio
(32 x 15,600 float32, 2.5x the bytes), and the same audio as int16 (what a 16-bit source holds before any
resampling; not what tagger sends). Transports: ``pipe``, every message pickled through the worker's own pipe
(where there is no ``memfd_create``; until 2026-12-07 tagger pickled them through one shared multiprocessing
queue), and ``shared memory``, the arrays in slots of shared memory (:mod:`tagger.embedding.slots`, the default on
Linux). Prints messages/s, MB/s
and the 30-s clips/s each sustains (31 patches a clip), with the CPU: the ceiling one consumer puts on `tagger
embed`, whatever the network's speed.
"""

import argparse
import time

import numpy as np

PAYLOADS = {
    "log-mel patches, float32": ((32, 96, 64), np.float32),
    "patch audio, float32": ((32, 15600), np.float32),
    "patch audio, int16": ((32, 15600), np.int16),
}
TRANSPORTS = {"pipe": False, "shared memory": True}


def payload_messages(index, path, *, shape, dtype, messages):
    """A worker job (the pipeline's message contract): ``messages`` messages of one payload, then done.

    It cycles through eight different blocks (16 MB of patch audio), so that a copy is not served from the cache.
    """
    rng = np.random.default_rng(index)
    blocks = [(rng.standard_normal(shape) * 1000).astype(dtype) for _ in range(8)]
    times = np.zeros(shape[0])
    for i in range(messages):
        yield ("patches", index, blocks[i % 8], times)
    yield ("done", index, 0.0, [])


def transfer_rate(shape, dtype, messages, *, shared_memory=True, workers=1):
    """Messages per second through the pipeline's hand-over, from the first message received to the last."""
    from tagger.embedding.pipeline import iter_messages

    per_worker = max(1, messages // workers)
    options = dict(shape=shape, dtype=np.dtype(dtype).str, messages=per_worker)
    stream = iter_messages(
        [str(i) for i in range(workers)], payload_messages, options, workers=workers, shared_memory=shared_memory
    )
    n, started = 0, None
    for message in stream:
        if message[0] != "patches":
            continue
        if started is None:
            started = time.perf_counter()  # the workers are up
        else:
            n += 1
    return n / (time.perf_counter() - started)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    from common import cpu_model

    print(f"CPU: {cpu_model()}; {args.workers} producer(s), one consumer, {args.messages} messages of 32 patches")
    for name, (shape, dtype) in PAYLOADS.items():
        for transport, shared in TRANSPORTS.items():
            rate = transfer_rate(shape, dtype, args.messages, shared_memory=shared, workers=args.workers)
            megabytes = np.prod(shape) * np.dtype(dtype).itemsize / 1e6
            print(
                f"  {name:26s} {transport:14s} {rate:6.0f} messages/s {rate * megabytes:6.0f} MB/s"
                f" {rate * 32 / 31:6.0f} clips/s"
            )


if __name__ == "__main__":
    main()
