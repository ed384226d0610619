"""How fast a decode worker can hand patches to the network's process: one spawned producer, one consumer, the
pipeline's transport (a multiprocessing queue of pickled NumPy arrays in 32-patch messages), per payload.

    python benchmarks/handover.py [--messages 400]

Payloads: the reference frontend's log-mel patches (32 x 96 x 64 float32), the device frontend's patch audio
(32 x 15,600 float32, 2.5x the bytes), and the same audio as int16 (what a 16-bit source holds before any
resampling; not what tagger sends today). Prints messages/s, MB/s and the 30-s clips/s each sustains (31
patches a clip), with the CPU: the ceiling one consumer puts on `tagger embed`, whatever the network's speed.
"""

import argparse
import multiprocessing as mp
import time

import numpy as np

PAYLOADS = {
    "log-mel patches, float32": ((32, 96, 64), np.float32),
    "patch audio, float32": ((32, 15600), np.float32),
    "patch audio, int16": ((32, 15600), np.int16),
}


def producer(queue, shape, dtype, n):
    block = (np.random.default_rng(0).standard_normal(shape) * 1000).astype(dtype)
    for _ in range(n):
        queue.put(("patches", 0, block, np.zeros(shape[0])))
    queue.put(None)


def transfer_rate(shape, dtype, messages):
    """Messages per second from one spawned producer through the pipeline's kind of queue to this process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue(maxsize=4)
    worker = ctx.Process(target=producer, args=(queue, shape, dtype, messages))
    worker.start()
    queue.get()  # the producer is up
    started, n = time.perf_counter(), 1
    while queue.get() is not None:
        n += 1
    seconds = time.perf_counter() - started
    worker.join()
    return n / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=400)
    args = ap.parse_args()
    from common import cpu_model

    print(f"CPU: {cpu_model()}; one producer, one consumer, {args.messages} messages of 32 patches")
    for name, (shape, dtype) in PAYLOADS.items():
        rate = transfer_rate(shape, dtype, args.messages)
        megabytes = np.prod(shape) * np.dtype(dtype).itemsize / 1e6
        print(f"  {name:26s} {rate:6.0f} messages/s {rate * megabytes:6.0f} MB/s {rate * 32 / 31:6.0f} clips/s")


if __name__ == "__main__":
    main()
