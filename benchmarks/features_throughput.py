"""Handcrafted-feature throughput on 30 s clips: one worker process, then every worker.

    python benchmarks/features_throughput.py [--clips 24] [--workers N]

Times ``tagger.embedding.features.features_to_file`` end to end (decode at 22,050 Hz,
the 57 features, the CSV row) on the real GTZAN tracks from ../shared
(repeated under distinct names; synthetic 30 s clips when absent), with one
decode worker, then with ``--workers`` (default: one per core beyond the
first, tagger's default), then with every core. Prints clips/s per setting.
HPSS and beat tracking dominate the cost (about 2 s of one core per clip).
"""

import os
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    from common import make_clips, parser

    ap = parser(__doc__)
    ap.set_defaults(clips=24)
    args = ap.parse_args()
    from tagger.embedding.features import features_to_file
    from tagger.embedding.pipeline import default_workers

    cores = os.cpu_count() or 1
    settings = sorted({1, args.workers or default_workers(), cores})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        paths, kind = make_clips(tmp / "clips", args.clips)
        print(f"{len(paths)} clips ({kind}), {cores} cores")
        for workers in settings:
            out = tmp / f"features-{workers}.csv"
            started = time.perf_counter()
            summary = features_to_file([str(p) for p in paths], out, workers=workers, progress=False)
            seconds = time.perf_counter() - started
            print(
                f"workers={workers}: {summary['extracted']} clips in {seconds:.1f} s = {summary['extracted'] / seconds:.2f} clips/s"
                f" ({summary['extracted'] / seconds / workers:.2f} per worker)"
            )


if __name__ == "__main__":
    main()
