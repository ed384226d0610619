"""Embedding throughput on 30 s clips: end to end vs the network alone.

In float32, whatever this CPU's default (benchmarks/cpu_side_by_side.py compares the default with it).

End to end = decode + resample + frontend + network + cache write, through
``tagger.embedding.embed.embed_files`` with its worker processes. Network only = the
same batches of patches through the same compiled network, nothing else.

    python benchmarks/embed_throughput.py [--clips 48] [--weights CKPT] [--precision float16] [--precision bfloat16]

``--precision P`` also times the network in P (float16: Keras mixed precision,
the GPU's fast path; bfloat16: this CPU's) and prints its largest relative
difference from float32 on the same patches.

Without --weights it uses random weights in the official layout (speed does
not depend on the values). Clips are the real GTZAN tracks from ../shared
when present (repeated under distinct names), else synthetic 30 s WAVs.
"""

import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    from common import alternate, inputs, parser

    ap = parser(__doc__)
    ap.add_argument(
        "--precision",
        action="append",
        choices=("bfloat16", "float16"),
        default=[],
        help="also time the network in this precision and print its error (repeatable)",
    )
    ap.add_argument(
        "--bfloat16", action="append_const", dest="precision", const="bfloat16", help="= --precision bfloat16"
    )
    args = ap.parse_args()

    from tagger.embedding.embed import embed_files
    from tagger.embedding.vggish.extractor import Embedder

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tagger-bench-"))
    try:
        weights, paths, kind, patches = inputs(args, tmp)
        emb = Embedder(weights, batch_size=args.batch_size, dtype="float32")  # the default: cpu_side_by_side.py
        emb.run(patches[: args.batch_size])  # trace + warm up

        holder = {}

        def end_to_end():
            summary = embed_files(
                paths, tmp / "cache", extractor=emb, workers=args.workers, overwrite=True, progress=False
            )
            if summary["failed"]:
                raise SystemExit(f"benchmark clips failed: {summary['failures'][:3]}")

        def network():
            holder["out"] = emb.run(patches)

        net_s, e2e_s, per_run = alternate(network, end_to_end, args.repeats)
        net_out = holder["out"]

        n = len(paths)
        print(f"clips: {n} x 30 s ({kind}), {len(patches)} patches, batch {args.batch_size}, cpus {os.cpu_count()}")
        print(f"network only : {n / net_s:7.2f} clips/s  ({len(patches) / net_s:7.1f} patches/s)")
        print(f"end to end   : {n / e2e_s:7.2f} clips/s  (decode + frontend + network + cache write)")
        print(
            f"ratio        : {net_s / e2e_s:7.1%} of network-only (medians of {args.repeats} alternating runs;"
            f" per-run ratios {per_run})"
        )
        import tensorflow as tf

        print(
            f"device       : {'GPU ' + str(tf.config.list_physical_devices('GPU')) if tf.config.list_physical_devices('GPU') else 'CPU'}"
        )
        for precision in dict.fromkeys(args.precision):
            low = Embedder(
                weights, batch_size=args.batch_size, dtype=precision, guard_tolerance=None, frontend_kind="reference"
            )  # the network alone, on log-mel patches
            low.run(patches[: args.batch_size])
            t0 = time.perf_counter()
            low_out = low.run(patches)
            low_s = time.perf_counter() - t0
            rel = np.abs(low_out - net_out).max() / np.abs(net_out).max()
            print(f"{precision:9s} net: {n / low_s:7.2f} clips/s; max |{precision} - f32| / max |f32| = {rel:.4f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
