"""What a decode worker spends per 30-s clip before any frontend: reading and resampling to 16 kHz, per format.

    python benchmarks/decode_costs.py [--repeats 3]

The ten GTZAN tracks of ../shared (22,050 Hz AU) are written as WAV (22,050 Hz, 16-bit), FLAC (the same) and MP3
(soundfile's libsndfile; 44,100 Hz, as music files usually are) and read back block by block with the decoder
`tagger embed`'s workers use (tagger.embedding.audio.iter_blocks, soxr to 16 kHz). One process, one core
(threads pinned to one): milliseconds per 30 s of audio, the median over the tracks of the best of the repeats.
It prints how many cores decoding needs to keep up with a network rate, for each format.
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402 - after the thread setting
import soundfile as sf  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shared", default=os.environ.get("TAGGER_SHARED", str(ROOT.parent / "shared")))
    args = ap.parse_args()
    from common import cpu_model

    from tagger.embedding.audio import iter_blocks

    tracks = sorted(pathlib.Path(args.shared, "data/gtzan/genres").glob("*/*.au"))
    with tempfile.TemporaryDirectory() as work:
        files = {"au": tracks}
        for fmt, rate, subtype in (("wav", None, "PCM_16"), ("flac", None, "PCM_16"), ("mp3", 44100, "MPEG_LAYER_III")):
            files[fmt] = []
            for t in tracks:
                y, sr = sf.read(t, dtype="float32")
                if rate and rate != sr:
                    import soxr

                    y, sr = soxr.resample(y, sr, rate), rate
                out = pathlib.Path(work, f"{t.stem}.{fmt}")
                sf.write(out, y, sr, subtype=subtype)
                files[fmt].append(out)
        print(f"CPU: {cpu_model()}; one core; ms per 30 s of audio (read + resample to 16 kHz), median of 10 tracks")
        costs = {}
        for fmt, paths in files.items():
            per_track = []
            for path in paths:
                seconds = sf.info(str(path)).duration
                best = min(_time(iter_blocks, path) for _ in range(args.repeats))
                per_track.append(best * 30.0 / seconds)
            costs[fmt] = float(np.median(per_track)) * 1000
            print(f"  {fmt:5s} {costs[fmt]:7.1f} ms")
        for rate in (16, 28, 650):
            need = ", ".join(f"{fmt} {rate * ms / 1000:.1f}" for fmt, ms in costs.items())
            print(f"cores to decode {rate} clips/s: {need}")


def _time(iter_blocks, path):
    t0 = time.perf_counter()
    for _ in iter_blocks(str(path)):
        pass
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
