"""Tagging throughput of two heads on the same clips: end to end, and from a filled embedding cache.

For the cost of an ensemble head against a single one: end to end (decode +
frontend + VGGish + head + CSV row, ``tagger tag``), where VGGish dominates;
and ``tagger tag --cache`` on a cache that already holds every clip, where
reading the cache and the head are all the work. Runs of the two heads
alternate; medians are printed.

    python benchmarks/ensemble_throughput.py [--models music,runs/ship_music] [--clips 48]

Without --weights it uses random weights in the official layout (speed does not
depend on the values). A model is a shipped name, a bundle or a run folder.
"""

import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    from common import inputs, parser

    ap = parser(__doc__)
    ap.add_argument("--models", default="music,genre10", help="two models, comma-separated")
    ap.add_argument(
        "--pca", default=os.environ.get("TAGGER_VGGISH_PCA", str(ROOT.parent / "shared/vggish/vggish_pca_params.npz"))
    )
    args = ap.parse_args()
    models = args.models.split(",")

    from tagger.tagging.api import Tagger
    from tagger.tagging.writer import tag_to_file

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tagger-bench-"))
    try:
        weights, paths, kind, _ = inputs(args, tmp)
        n = len(paths)
        taggers = {
            (m, cached): Tagger(
                m,
                weights=weights,
                pca_params=args.pca,
                batch_size=args.batch_size,
                cache_dir=str(tmp / "cache") if cached else None,
            )
            for m in models
            for cached in (False, True)
        }
        count = iter(range(10**6))

        def run(key):
            started = time.perf_counter()
            summary = tag_to_file(
                taggers[key], [tmp / "clips"], tmp / f"tags{next(count)}.csv", workers=args.workers, progress=False
            )
            if summary["failed"]:
                raise SystemExit(f"benchmark clips failed: see {summary['errors_file']}")
            return time.perf_counter() - started

        for m in models:  # warm every path, and fill the cache (both heads read the same entries)
            run((m, False))
            run((m, True))
        times = {key: [] for key in taggers}
        for _ in range(args.repeats):
            for key in taggers:
                times[key].append(run(key))
        median = {key: statistics.median(t) for key, t in times.items()}
        print(f"clips: {n} x 30 s ({kind}), batch {args.batch_size}, cpus {os.cpu_count()}, medians of {args.repeats}")
        for cached, what in ((False, "end to end"), (True, "from a filled cache (--cache)")):
            a, b = (median[(m, cached)] for m in models)
            print(f"{what}:")
            for m in models:
                print(f"  {m:<40} {n / median[(m, cached)]:8.2f} clips/s")
            print(f"  {models[1]} / {models[0]}: {a / b:6.1%} of the throughput")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
