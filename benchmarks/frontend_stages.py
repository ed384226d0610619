"""The reference frontend (NumPy, in the decode workers) against the device frontend (keras.ops, with the network),
per precision: `tagger embed`'s clips/s end to end, the CPU seconds it spends per clip over all its processes (and
apart: the network's process, the decode workers, whose start-up counts too), and
the network alone (VGGish on precomputed patches; with the device frontend, on each patch's samples, so the
frontend is part of it). First, each stage of one 30-s clip timed apart in this process: read (soundfile, at the
file's rate), resample (soxr to 16 kHz), the reference log-mel (NumPy), the device log-mel (keras.ops, the clip's
patches in one batch), the hand-over's pickling (dumps + loads of one clip's patches: log-mel, or float32 audio for
the device frontend), their transfer from a spawned process through the pipeline's hand-over, pickled through the
pipe alone and with shared memory, the default on Linux (benchmarks/handover.py), and the network per clip in each
precision; milliseconds, median over the ten tracks. The end-to-end rows mark the frontend each precision runs by
default.

    python benchmarks/frontend_stages.py [--clips 24] [--weights CKPT]

Clips: the ten GTZAN tracks of ../shared (30 s each), cycled under distinct names. Without --weights, random
weights in the official layout (speed does not depend on the values). Prints the CPU with the table.
"""

import argparse
import os
import pathlib
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cpu_seconds():
    """User + system seconds of this process (the network's) and of its finished children (the decode workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return np.array([own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--shared", default=os.environ.get("TAGGER_SHARED", str(ROOT.parent / "shared")))
    args = ap.parse_args()

    from common import cpu_name

    from tagger import backend
    from tagger.embedding.audio import load
    from tagger.embedding.embed import embed_files
    from tagger.embedding.vggish import device_frontend, frontend, params
    from tagger.embedding.vggish.extractor import Embedder
    from tagger.testing import random_weights, write_checkpoint

    work = pathlib.Path(tempfile.mkdtemp(prefix="frontend-stages-"))
    try:
        weights = args.weights or str(work / "w" / "vggish_model.ckpt")
        if not args.weights:
            write_checkpoint(random_weights(0), weights)
        tracks = sorted(pathlib.Path(args.shared, "data/gtzan/genres").glob("*/*.au"))
        (work / "clips").mkdir()
        for i in range(args.clips):
            shutil.copy(tracks[i % len(tracks)], work / "clips" / f"{i:03d}_{tracks[i % len(tracks)].name}")
        waves = [load(str(t), sample_rate=params.SAMPLE_RATE) for t in tracks]
        fastest = backend.auto_dtype()
        stages(tracks, weights, fastest)
        rows = []
        for dtype in dict.fromkeys(["float32", fastest]):
            for kind in ("reference", "device"):
                emb = Embedder(weights, dtype=dtype, frontend_kind=kind, guard_tolerance=None)
                output = "audio" if kind == "device" else "log_mel"
                inputs = np.concatenate([frontend.waveform_to_patches(w, output=output)[0] for w in waves])
                emb.run(inputs[: emb.batch_size])  # traced
                t0 = time.perf_counter()
                emb.run(inputs)
                network = len(waves) / (time.perf_counter() - t0)
                cache = work / f"cache-{dtype}-{kind}"
                embed_files([str(work / "clips")], str(cache), extractor=emb, progress=False)  # warm: workers, kernels
                shutil.rmtree(cache)
                c0, t0 = cpu_seconds(), time.perf_counter()
                summary = embed_files([str(work / "clips")], str(cache), extractor=emb, progress=False)
                wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
                assert summary["embedded"] == args.clips, summary
                rows.append((dtype, kind, args.clips / wall, cpu / args.clips, network))
        print(f"CPU: {cpu_name()}; {args.clips} GTZAN clips of 30 s; backend {backend.name()}")
        print(
            f"{'precision':10s} {'frontend':10s} {'embed clips/s':>14s} {'CPU s/clip':>11s} {'(network, workers)':>19s}"
            f" {'network clips/s':>16s}"
        )
        for dtype, kind, rate, cpu, network in rows:
            default = "  (the default)" if kind == device_frontend.default_kind(dtype) else ""
            split = f"({cpu[0]:.3f}, {cpu[1]:.3f})"
            print(
                f"{dtype:10s} {kind:10s} {rate:14.2f} {cpu.sum():11.3f} {split:>19s} {network:16.2f}"
                f"   ({rate / network:.0%} of network)" + default
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ms(fn, repeats=3):
    """The best of ``repeats`` calls of ``fn``, in milliseconds."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def stages(tracks, weights, fastest):
    """Print each stage's milliseconds per 30-s clip (median over the tracks), timed apart in this process."""
    import pickle

    import soundfile as sf
    import soxr
    from common import cpu_name
    from handover import PAYLOADS, TRANSPORTS, transfer_rate

    from tagger.embedding.vggish import device_frontend, frontend, params
    from tagger.embedding.vggish.extractor import Embedder

    per = {}

    def add(stage, ms, seconds):
        per.setdefault(stage, []).append(ms * 30.0 / seconds)

    for track in tracks:
        y, sr = sf.read(str(track), dtype="float32")
        seconds = len(y) / sr
        add("read (soundfile)", _ms(lambda: sf.read(str(track), dtype="float32")), seconds)
        add("resample (soxr to 16 kHz)", _ms(lambda: soxr.resample(y, sr, params.SAMPLE_RATE)), seconds)
        w = soxr.resample(y, sr, params.SAMPLE_RATE).astype(np.float32)
        mel, times = frontend.waveform_to_patches(w, output="log_mel")
        audio, _ = frontend.waveform_to_patches(w, output="audio")
        add(
            "frontend: reference log-mel (NumPy)",
            _ms(lambda: frontend.waveform_to_patches(w, output="log_mel")),
            seconds,
        )
        device_frontend.log_mel(audio)  # traced
        add("frontend: device log-mel (keras.ops)", _ms(lambda: device_frontend.log_mel(audio)), seconds)
        for what, patches in (("log-mel patches", mel), ("float32 patch audio", audio)):
            message = ("patches", 0, patches, times)
            add(f"hand-over: pickle {what}", _ms(lambda: pickle.loads(pickle.dumps(message, protocol=5))), seconds)
    for dtype in dict.fromkeys(["float32", fastest]):
        emb = Embedder(weights, dtype=dtype, guard_tolerance=None, frontend_kind="reference")  # on log-mel
        y, sr = sf.read(str(tracks[0]), dtype="float32")
        mel, _ = frontend.waveform_to_patches(soxr.resample(y, sr, params.SAMPLE_RATE), output="log_mel")
        batch = np.concatenate([mel] * 3)
        emb.run(batch)  # traced
        per[f"network ({dtype})"] = [_ms(lambda: emb.run(batch)) / 3 * 30.0 / (len(y) / sr)]
    for what, payload in (("log-mel patches", "log-mel patches, float32"), ("float32 audio", "patch audio, float32")):
        # one spawned producer to this process through the pipeline's hand-over (31 patches a 30-s clip)
        for transport, shared in TRANSPORTS.items():
            rate = transfer_rate(*PAYLOADS[payload], 1000, shared_memory=shared)
            per[f"hand-over: transfer {what} ({transport})"] = [1000 * 31 / 32 / rate]
    print(f"CPU: {cpu_name()}; per stage, ms per 30-s clip (median of {len(tracks)} GTZAN tracks; this process)")
    for stage, values in per.items():
        print(f"  {stage:52s} {float(np.median(values)):8.1f}")


if __name__ == "__main__":
    main()
