"""musicnn's own outputs on the shared clips, the reference tagger's port is tested against (issue 38).

    python benchmarks/musicnn_reference.py --musicnn DIR [--shared ../shared] [--out tests/musicnn_reference.npz]

Runs musicnn 0.1.0's own ``extractor()`` (installed apart from tagger's packages: ``pip install --no-deps
--target DIR musicnn``) in a child process started from another folder with ``TF_USE_LEGACY_KERAS=1``, as
``cpu_side_by_side.py --musicnn`` runs it, for each of its four networks (MTT_musicnn, MSD_musicnn, MTT_vgg,
MSD_vgg) on the ten shared GTZAN tracks and the shared MagnaTagATune clip.

One line of musicnn is computed the NumPy-1 way: ``np.log10(10000 * audio_rep + 1)`` on its float16 mel
spectrogram. Under NumPy 1 the Python scalar 10000 promoted the product to float32 (value-based casting);
under NumPy 2 it stays float16 and overflows to inf (0.8 % of ``blues.00000.au``'s bins), so the child
replaces ``musicnn.extractor.batch_data`` by the same function with the spectrogram cast back to float32
after its float16 rounding. And it runs each clip's patches as one batch (``configuration.BATCH_SIZE``):
with musicnn's batch of one patch, ``extractor()`` returns the first patch's ``penultimate`` (and
``cnn1``-``cnn3``) for every later patch, as its loop unpacks them under other names (measured: every row of
blues.00000's ``penultimate`` equal to the first). Nothing else of musicnn is changed.

It writes, per network and clip, the taggram (patches x 50 sigmoids) and the representations tagger
caches: ``max_pool``, ``mean_pool`` (patches x 753), ``penultimate`` (patches x 200) for the musicnn
networks, ``pool5`` (patches x 256, musicnn's (2 x patches, 128) rows joined two by two in the network's
flatten order) for the vgg ones. These are musicnn's outputs (derived arrays, a few hundred KB), not the
shared audio. It prints musicnn's top-3 tags per clip (the mean of the taggram, as its ``top_tags``).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

NETWORKS = ("MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg")

CHILD = r"""
import json, sys
import numpy as np
import librosa
import musicnn.extractor as ex
from musicnn import configuration as config


def batch_data(audio_file, n_frames, overlap):
    # musicnn 0.1.0's batch_data, with the log computed in float32 after the float16 rounding (NumPy 1's result)
    audio, sr = librosa.load(audio_file, sr=config.SR)
    audio_rep = librosa.feature.melspectrogram(
        y=audio, sr=sr, hop_length=config.FFT_HOP, n_fft=config.FFT_SIZE, n_mels=config.N_MELS
    ).T
    audio_rep = audio_rep.astype(np.float16).astype(np.float32)
    audio_rep = np.log10(10000 * audio_rep + 1)
    last_frame = audio_rep.shape[0] - n_frames + 1
    batch = np.stack([audio_rep[t : t + n_frames] for t in range(0, last_frame, overlap)])
    return batch, audio_rep


ex.batch_data = batch_data
# every patch of a clip in one batch: with musicnn's BATCH_SIZE of 1, extractor() returns the first patch's
# penultimate (and cnn1-cnn3) for every later patch (its loop unpacks them under other names)
config.BATCH_SIZE = 1 << 20
network, out, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
arrays, tops = {}, {}
for path in paths:
    taggram, labels, features = ex.extractor(path, model=network, extract_features=True)
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    arrays[f"{network}/{stem}/taggram"] = taggram.astype(np.float32)
    if "vgg" in network:
        pool5 = np.asarray(features["pool5"], np.float32)
        arrays[f"{network}/{stem}/pool5"] = pool5.reshape(len(taggram), -1)
    else:
        for name in ("max_pool", "mean_pool", "penultimate"):
            arrays[f"{network}/{stem}/{name}"] = np.asarray(features[name], np.float32)
    tops[stem] = [labels[i] for i in taggram.mean(axis=0).argsort()[-3:][::-1]]
np.savez(out, **arrays)
print("TOPS " + json.dumps(tops))
"""


def clips(shared):
    shared = Path(shared)
    found = sorted((shared / "data/gtzan/genres").glob("*/*.au"))
    found += sorted((shared / "data/mtt/audio").glob("*/*.mp3"))
    if len(found) != 11:
        raise SystemExit(f"{shared}: expected the ten GTZAN tracks and one MagnaTagATune clip, found {len(found)}")
    return found


def run_network(folder, network, paths, workdir):
    env = dict(
        os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.fspath(Path(folder).resolve())
    )
    out = Path(workdir) / f"{network}.npz"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, network, os.fspath(out), *(os.fspath(p.resolve()) for p in paths)],
        env=env,
        cwd=workdir,  # not the checkout: nothing of tagger on the child's path
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"musicnn {network} failed:\n{done.stderr[-3000:]}")
    tops = json.loads(done.stdout.split("TOPS ", 1)[1].splitlines()[0])
    with np.load(out) as data:
        return {k: data[k] for k in data.files}, tops


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--musicnn", required=True, metavar="DIR", help="folder musicnn is installed in (--target)")
    ap.add_argument("--shared", default=os.environ.get("TAGGER_SHARED", "../shared"))
    ap.add_argument("--out", default="tests/musicnn_reference.npz")
    args = ap.parse_args()
    paths = clips(args.shared)
    arrays, tops = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for network in NETWORKS:
            got, top = run_network(args.musicnn, network, paths, tmp)
            arrays.update(got)
            tops[network] = top
            print(f"{network}: " + "; ".join(f"{stem} {', '.join(t)}" for stem, t in top.items()), flush=True)
    arrays["top3"] = np.array(json.dumps(tops))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"{args.out}: {len(arrays) - 1} arrays, {os.path.getsize(args.out) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
