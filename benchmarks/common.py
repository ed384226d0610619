"""Shared by the benchmark scripts: 30 s test clips and the alternating timing method."""

import os
import pathlib
import shutil
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


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
