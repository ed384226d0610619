"""Shared by the benchmark scripts: 30 s test clips."""

import os
import pathlib
import shutil

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
