"""Shared by the benchmark scripts: options, 30 s test clips and their patches, and the alternating timing method."""

import os
import pathlib
import shutil
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (every figure a benchmark prints names it)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def cpu_name():
    """The CPU's model name, its core count and the bfloat16 flags it has (what sets ``--precision auto``)."""
    try:
        flags = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    extra = [f for f in ("avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return f"{cpu_model()} ({os.cpu_count()} cores{', ' + ', '.join(extra) if extra else ''})"


def parser(doc):
    """The options every throughput benchmark takes; scripts add their own."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    return ap


def inputs(args, tmp):
    """VGGish weights (``--weights``, or random ones in the official layout), the clips, and their patches.

    Returns
    -------
    weights : str
    paths : list of pathlib.Path
    kind : str
        What the clips are.
    patches : np.ndarray, shape (n_patches, 96, 64), float32
    """
    from tagger.embedding import audio
    from tagger.embedding.vggish import frontend
    from tagger.testing import random_weights, write_checkpoint

    weights = args.weights or write_checkpoint(random_weights(0), str(tmp / "w" / "vggish_model.ckpt"), version=2)
    paths, kind = make_clips(tmp / "clips", args.clips)
    patches = np.concatenate([frontend.waveform_to_patches(audio.load(p))[0] for p in paths])
    return weights, paths, kind, patches


def make_clips(folder, n):
    import soundfile as sf

    shared = pathlib.Path(os.environ.get("TAGGER_SHARED", ROOT.parent / "shared"))
    real = sorted((shared / "data/gtzan/genres").glob("*/*.au"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        dst = folder / f"clip{i:04d}.au"
        if real:
            shutil.copy(real[i % len(real)], dst)
        else:
            rng = np.random.default_rng(i)
            sf.write(str(dst), (0.1 * rng.standard_normal(30 * 22050)).astype(np.float32), 22050)
        paths.append(dst)
    return paths, ("real GTZAN .au (22.05 kHz)" if real else "synthetic 22.05 kHz")


def alternate(network, end_to_end, repeats):
    """Time ``network()`` and ``end_to_end()`` alternately; medians beat this machine's drift.

    Returns
    -------
    net_s, e2e_s : float
        Median seconds of each.
    per_run : str
        Each run's network / end-to-end ratio, e.g. ``"88%, 92%, 90%"``.
    """
    net_times, e2e_times = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        network()
        net_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        end_to_end()
        e2e_times.append(time.perf_counter() - t0)
    per_run = ", ".join(f"{a / b:.0%}" for a, b in zip(net_times, e2e_times))
    return float(np.median(net_times)), float(np.median(e2e_times)), per_run
