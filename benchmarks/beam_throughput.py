"""The Beam path's per-worker overhead: DirectRunner clips/s beside `tagger embed` on the same 30 s clips.

    python benchmarks/beam_throughput.py [--clips 48] [--weights CKPT] [--repeats 2]

The DirectRunner is Beam's local test runner and is not meant to be fast:
it runs every step in this one process, so decoding does not overlap the
network as `tagger embed`'s worker processes make it. The figure shows what
the Beam path costs on one worker; the projection it prints for Dataflow
(stated as such, not measured) assumes each worker runs the network at the
measured network-only rate of its machine and decodes with its other cores
at the measured per-core decode rate.
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
    from common import inputs, parser

    ap = parser(__doc__)
    args = ap.parse_args()
    args.repeats = min(args.repeats, 2)

    from tagger.distributed import run_embed
    from tagger.embedding import audio
    from tagger.embedding.embed import embed_files
    from tagger.embedding.vggish import frontend
    from tagger.embedding.vggish.extractor import Embedder

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tagger-bench-"))
    try:
        weights, paths, kind, patches = inputs(args, tmp)
        emb = Embedder(weights, batch_size=args.batch_size, frontend_kind="reference")  # Beam's frontend
        emb.run(patches[: args.batch_size])  # trace + warm up
        n = len(paths)
        local, beam = [], []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            summary = embed_files(paths, tmp / f"local{r}", extractor=emb, workers=args.workers, progress=False)
            local.append(time.perf_counter() - t0)
            assert summary["embedded"] == n, summary
            t0 = time.perf_counter()
            summary = run_embed(
                [str(p) for p in paths],
                str(tmp / f"beam{r}"),
                embedder=emb,
                runner="beam",
                pipeline_args=["--direct_num_workers=1", "--direct_running_mode=in_memory"],
            )
            beam.append(time.perf_counter() - t0)
            assert summary["embedded"] == n, summary
        t0 = time.perf_counter()
        emb.run(patches)
        net_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for p in paths[: min(8, n)]:
            frontend.waveform_to_patches(audio.load(p))
        decode_per_clip = (time.perf_counter() - t0) / min(8, n)
        local_s, beam_s = float(np.median(local)), float(np.median(beam))
        print(
            f"clips: {n} x 30 s ({kind}), batch {args.batch_size}, cpus {os.cpu_count()}, medians of {args.repeats} runs"
        )
        print(f"tagger embed          : {n / local_s:6.2f} clips/s (decode workers beside the network)")
        print(
            f"DirectRunner (beam)   : {n / beam_s:6.2f} clips/s (one process: decode, network, entry writes in turn)"
            f" = {local_s / beam_s:.0%} of tagger embed"
        )
        print(
            f"network only          : {n / net_s:6.2f} clips/s; decode + frontend: {1 / decode_per_clip:.2f} clips/s per core"
        )
        cores = os.cpu_count() or 1
        worker = min(n / net_s, (cores - 1 or 1) / decode_per_clip)
        print(
            f"projection (not measured) for a Dataflow worker like this machine: min(network {n / net_s:.2f},"
            f" decode {(cores - 1 or 1) / decode_per_clip:.2f} on {cores - 1 or 1} cores) = {worker:.2f} clips/s;"
            f" 1,000,000 clips = {1e6 / worker / 3600:.0f} worker-hours"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
