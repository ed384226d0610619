"""Tagging throughput on 30 s clips: `tagger tag` end to end vs the network alone.

In float32, whatever this CPU's default (benchmarks/cpu_side_by_side.py compares the default with it).

End to end = decode + frontend + VGGish + head + CSV row, through
``tagger.tagging.writer.tag_to_file`` with its worker processes. Network only = the
same patches through the same compiled VGGish. Medians of alternating runs.

    python benchmarks/tag_throughput.py [--clips 48] [--weights CKPT] [--model music]

Without --weights it uses random weights in the official layout (speed does not
depend on the values). The head is a shipped bundle or a run folder.
"""

import os
import pathlib
import shutil
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    from common import alternate, inputs, parser

    ap = parser(__doc__)
    ap.add_argument("--model", default="music")
    ap.add_argument(
        "--pca", default=os.environ.get("TAGGER_VGGISH_PCA", str(ROOT.parent / "shared/vggish/vggish_pca_params.npz"))
    )
    args = ap.parse_args()

    from tagger.tagging.api import Tagger
    from tagger.tagging.writer import tag_to_file

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tagger-bench-"))
    try:
        weights, paths, kind, patches = inputs(args, tmp)
        tagger = Tagger(args.model, weights=weights, pca_params=args.pca, batch_size=args.batch_size, dtype="float32")
        emb = tagger.extractor
        emb.run(patches[: args.batch_size])
        tagger.head.scores(emb.finalize(emb.run(patches[:31])), taggram=False)  # warm the head too
        runs = iter(range(args.repeats))

        def end_to_end():
            summary = tag_to_file(
                tagger, [tmp / "clips"], tmp / f"tags{next(runs)}.csv", workers=args.workers, progress=False
            )
            if summary["failed"]:
                raise SystemExit(f"benchmark clips failed: see {summary['errors_file']}")

        net_s, e2e_s, per_run = alternate(lambda: emb.run(patches), end_to_end, args.repeats)
        n = len(paths)
        print(
            f"clips: {n} x 30 s ({kind}), {len(patches)} patches, model {args.model}, batch {args.batch_size}, cpus {os.cpu_count()}"
        )
        print(f"network only : {n / net_s:7.2f} clips/s")
        print(f"end to end   : {n / e2e_s:7.2f} clips/s  (decode + frontend + VGGish + head + CSV)")
        print(
            f"ratio        : {net_s / e2e_s:7.1%} of network-only (medians of {args.repeats} alternating runs;"
            f" per-run ratios {per_run})"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
