"""tagger's musicnn against musicnn's own ``extractor()``, on the same clips in one run (issue 38, point 8).

    python benchmarks/musicnn_speed.py --musicnn DIR [--clips 22] [--network musicnn-mtt]

Clips: the eleven shared ones (ten 30 s GTZAN tracks, one 29 s MagnaTagATune clip), cycled to ``--clips``.
Each side is warm (its first clip is not timed) and runs its whole job per clip, decoding included:

- tagger, in this process: ``Tagger(NETWORK)`` (the shipped tagger of that network, its defaults: float32, decode
  workers on the other cores) over the clips, end to end; and the network alone on the eleven clips' patches in
  full batches of its ``batch_size`` (32), as ``Tagger`` batches them across clips.
- musicnn 0.1.0, in a child process started from another folder with ``TF_USE_LEGACY_KERAS=1`` (installed apart:
  ``pip install --no-deps --target DIR musicnn``), ``extractor(path, model, extract_features=False)`` one clip
  after another, as its README calls it (it rebuilds its graph and restores its checkpoint for every clip; that
  is part of what a user of it waits for). Its one NumPy-2 line is computed the NumPy-1 way, as
  ``musicnn_reference.py`` does, so that its taggrams hold numbers; its speed is the same either way.

Prints clips/s per side and the ratio, with the CPU named. tagger's end to end includes starting its decode
workers (a new process each, whose first librosa call takes about 3 s); the line after it counts from its first
clip's result on.
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CHILD_TAIL = r"""
import time
ex.extractor(paths[0], model=network, extract_features=False)  # warm: librosa's caches, TensorFlow's kernels
t0 = time.perf_counter()
for path in paths:
    ex.extractor(path, model=network, extract_features=False)
print("SECONDS", time.perf_counter() - t0)
"""


def musicnn_seconds(folder, network, paths):
    from musicnn_reference import CHILD

    head = CHILD.split("network, out, paths = ", 1)[0]  # musicnn's imports and the float32 batch_data
    code = head + "network, paths = sys.argv[1], sys.argv[2:]\n" + CHILD_TAIL
    code = code.replace("config.BATCH_SIZE = 1 << 20\n", "")  # its own batch of one patch, as users run it
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(Path(folder).resolve()))
    done = subprocess.run(
        [sys.executable, "-c", code, network, *map(str, paths)],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"musicnn failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.split("SECONDS", 1)[1].split()[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--musicnn", required=True, metavar="DIR", help="folder musicnn is installed in (--target)")
    ap.add_argument("--clips", type=int, default=22)
    ap.add_argument("--network", default="musicnn-mtt", help="musicnn-mtt, musicnn-msd, vgg-mtt or vgg-msd")
    ap.add_argument("--shared", default=os.environ.get("TAGGER_SHARED", str(ROOT.parent / "shared")))
    args = ap.parse_args()
    os.environ.setdefault("TAGGER_MUSICNN_WEIGHTS", str(Path(args.musicnn).resolve() / "musicnn"))
    import numpy as np
    from musicnn_reference import clips

    from tagger.embedding.audio import load
    from tagger.embedding.musicnn import frontend, params
    from tagger.tagging.api import Tagger

    found = clips(args.shared)
    paths = [found[i % len(found)] for i in range(args.clips)]
    folder = params.network(args.network)[0]

    tagger = Tagger(args.network)
    list(tagger.iter_tag([(str(paths[0]), None)], workers=0, taggram=False))  # warm: traced network, librosa
    t0 = time.perf_counter()
    results, stamps = [], []
    for result in tagger.iter_tag([(str(p), None) for p in paths], taggram=False):
        results.append(result)
        stamps.append(time.perf_counter())
    tagger_s, first_s = stamps[-1] - t0, stamps[0] - t0
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    patches = [frontend.patches_of(frontend.log_mel(load(p, sample_rate=params.SAMPLE_RATE)))[0] for p in found]
    n_patches = sum(len(p) for p in patches)
    every = np.concatenate(patches)  # in full batches, as Tagger batches patches across clips
    tagger.extractor.run(every[: tagger.extractor.batch_size])
    t0 = time.perf_counter()
    tagger.extractor.run(every)
    network_s = time.perf_counter() - t0
    theirs_s = musicnn_seconds(args.musicnn, folder, paths)

    from common import cpu_name

    print(f"CPU: {cpu_name()}; {args.clips} clips (the 11 shared ones cycled), {args.network} ({folder})")
    print(f"{'':38s} {'clips/s':>8s}")
    print(
        f"{'tagger, Tagger end to end (float32)':38s} {args.clips / tagger_s:8.2f}   (first clip after {first_s:.1f} s)"
    )
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    print(f"{'tagger, Tagger after its first clip':38s} {steady:8.2f}   (decode workers started and warm)")
    print(f"{'tagger, network alone':38s} {len(found) / network_s:8.2f}   ({n_patches / network_s:.0f} patches/s)")
    print(f"{'musicnn 0.1.0 extractor(), end to end':38s} {args.clips / theirs_s:8.2f}")
    print(f"tagger / musicnn, end to end: {theirs_s / tagger_s:.1f}x")


if __name__ == "__main__":
    main()
