"""float32 against the default precision, end to end against the network alone, and tagger against musicnn: one run.

    python benchmarks/cpu_side_by_side.py [--clips 24] [--repeats 2] [--musicnn DIR] [--weights CKPT]

For each precision (float32; the default, ``auto``, with what it resolved to on this CPU; and bfloat16
forced where ``auto`` is not bfloat16 but the CPU has a bfloat16 path), warm and in one process:

- **network only**: the clips' patches through the compiled VGGish, nothing else;
- **embed**: ``embed_files`` (decode + resample + frontend + network + cache write, its decode workers);
- **tag**: ``tag_to_file`` with the shipped head (the same, plus PCA, the head and the CSV row).

Then musicnn's ``top_tags`` on the same clips (MTT_vgg and MTT_musicnn, one clip after another as its
README calls it), when ``--musicnn DIR`` names a folder it is installed in, apart from tagger's packages
(``pip install --no-deps --target DIR musicnn``; it runs on TensorFlow's legacy Keras, so the benchmark
starts it with ``TF_USE_LEGACY_KERAS=1``; it needs librosa and tf-keras, both in tagger's environment).

Without --weights the network has random weights in the official layout (speed does not depend on the
values; the precision guard runs as it does on real weights). Clips: the real GTZAN tracks in ../shared
(repeated under distinct names), else synthetic 30 s WAVs. Medians of alternating runs.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from statistics import median

import common

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MUSICNN_SCRIPT = """
import sys, time
from musicnn.tagger import top_tags
model, paths = sys.argv[1], sys.argv[2:]
top_tags(paths[0], model=model, topN=3, print_tags=False)  # warm: first graph, librosa's caches
t0 = time.perf_counter()
for p in paths:
    top_tags(p, model=model, topN=3, print_tags=False)
print(len(paths) / (time.perf_counter() - t0))
"""


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def musicnn_rates(folder, paths):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.fspath(folder))
    rates = {}
    for model in ("MTT_vgg", "MTT_musicnn"):
        done = subprocess.run(
            [sys.executable, "-c", MUSICNN_SCRIPT, model, *map(os.fspath, paths)],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"musicnn {model} failed:\n{done.stderr[-2000:]}")
        rates[model] = float(done.stdout.split()[-1])
    return rates


def main():
    from common import inputs, parser

    ap = parser(__doc__)
    ap.set_defaults(clips=24, repeats=2)
    ap.add_argument("--model", default="music", help="the head `tagger tag` uses (default music)")
    ap.add_argument(
        "--pca", default=os.environ.get("TAGGER_VGGISH_PCA", str(ROOT.parent / "shared/vggish/vggish_pca_params.npz"))
    )
    ap.add_argument("--musicnn", default=None, metavar="DIR", help="folder musicnn is installed in (else skipped)")
    args = ap.parse_args()
    os.environ.pop("TAGGER_PRECISION", None)  # the default is what is measured

    from tagger import backend
    from tagger.embedding.embed import embed_files
    from tagger.embedding.vggish.extractor import Embedder
    from tagger.tagging.api import Tagger
    from tagger.tagging.writer import tag_to_file

    flags = backend.cpu_flags()
    auto = backend.auto_dtype()
    precisions = {"float32": "float32", f"auto ({auto})": "auto"}
    if auto != "bfloat16" and any(f in flags for f in backend.CPU_BFLOAT16_FLAGS):
        precisions["bfloat16 (forced)"] = "bfloat16"
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tagger-bench-"))
    try:
        weights, paths, kind, patches = inputs(args, tmp)
        n = len(paths)
        bf16 = [f for f in backend.CPU_BFLOAT16_FLAGS if f in flags] or ["no bfloat16 flag"]
        print(f"CPU: {common.cpu_model()} ({', '.join(bf16)}), {os.cpu_count()} cores, Keras backend {backend.name()}")
        print(f"clips: {n} x 30 s ({kind}), {len(patches)} patches, batch {args.batch_size}, head {args.model}")
        rows = {}
        for label, precision in precisions.items():
            emb = Embedder(weights, batch_size=args.batch_size, dtype=precision)
            tagger = Tagger(
                args.model,
                weights=weights,
                pca_params=args.pca,
                batch_size=args.batch_size,
                dtype=precision,
                allow_other_embedding=True,
            )
            emb.settle(paths)  # the guard, as a run does it first
            embed_files(paths[:2], tmp / "warm", extractor=emb, workers=0, overwrite=True, progress=False)  # trace
            tag_to_file(tagger, paths[:2], tmp / "warm.csv", workers=0, progress=False, overwrite=True)
            runs = iter(range(10**6))

            def embed_run(emb=emb):
                summary = embed_files(
                    paths, tmp / f"cache-{emb.dtype}", extractor=emb, workers=args.workers, overwrite=True
                )
                if summary["failed"]:
                    raise SystemExit(f"benchmark clips failed: {summary['failures'][:3]}")

            def tag_run(tagger=tagger):
                out = tmp / f"tags{next(runs)}.csv"
                summary = tag_to_file(tagger, paths, out, workers=args.workers, progress=False, overwrite=True)
                if summary["failed"]:
                    raise SystemExit(f"benchmark clips failed: see {summary['errors_file']}")

            # the network alone takes log-mel patches: the reference frontend's, whatever the default frontend
            net = (
                emb
                if emb.frontend_kind == "reference"
                else Embedder(
                    weights,
                    batch_size=args.batch_size,
                    dtype=emb.dtype,
                    guard_tolerance=None,
                    frontend_kind="reference",
                )
            )
            net.run(patches[: args.batch_size])  # trace / warm
            net_s = timed(lambda net=net: net.run(patches), args.repeats)
            embed_s = timed(embed_run, args.repeats)
            tag_s = timed(tag_run, args.repeats)
            guard = emb.guard or {}
            rows[label] = (emb.dtype, n / net_s, n / embed_s, n / tag_s, guard.get("difference"))
        print()
        print(f"{'precision':20s} {'network only':>13s} {'embed':>8s} {'of network':>10s} {'tag':>8s}  guard")
        for label, (used, net, emb_rate, tag_rate, difference) in rows.items():
            guard = "-" if difference is None else f"{difference:.4f}"
            print(f"{label:20s} {net:13.2f} {emb_rate:8.2f} {emb_rate / net:10.0%} {tag_rate:8.2f}  {guard}")
        print("(clips/s of 30 s; 'of network': embed end to end / network only; guard: max |low - f32| / max |f32|)")
        f32, default = rows["float32"], rows[f"auto ({auto})"]
        print(
            f"default against --precision float32: embed {default[2] / f32[2]:.2f}x, tag {default[3] / f32[3]:.2f}x"
            f" (network {default[1] / f32[1]:.2f}x)"
        )
        if args.musicnn:
            rates = musicnn_rates(args.musicnn, paths)
            print()
            print(f"{'tagging, clips/s':20s} {'':>13s} {'':>8s} {'':>10s} {'tag':>8s}")
            print(f"{'tagger (default)':20s} {'':>13s} {'':>8s} {'':>10s} {default[3]:8.2f}")
            for model, rate in rates.items():
                print(f"{'musicnn ' + model:20s} {'':>13s} {'':>8s} {'':>10s} {rate:8.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
