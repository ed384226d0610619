"""Augmentation throughput on 30 s clips: log-mel patch caching with and without augmented copies.

    python benchmarks/augment_throughput.py [--clips 24] [--workers N]

Times ``tagger.embedding.embed.embed_items`` with a :class:`tagger.embedding.spectrogram.PatchExtractor`
(decode, frontend, float16 cache entry) over the clips as they are, then over
one augmented copy of each (the seven transforms forced on, p = 1, so every
copy pays for all of them; at the default p = 0.25 a copy costs less), with
all decode workers. Clips: the real GTZAN tracks from ../shared, repeated
under distinct names (synthetic 30 s clips when absent).
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
    import json

    from tagger.embedding.augment import DEFAULTS, Augmented, augment_seed
    from tagger.embedding.embed import embed_items
    from tagger.embedding.pipeline import default_workers
    from tagger.embedding.spectrogram import PatchExtractor

    workers = args.workers or default_workers(gpu=True)  # no network to share the cores with
    every = json.dumps({name: {**cfg, "p": 1.0} for name, cfg in DEFAULTS.items()}, sort_keys=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        paths, kind = make_clips(tmp / "clips", args.clips)
        print(f"{len(paths)} clips ({kind}), {workers} workers of {os.cpu_count()} cores")
        plain = [(str(p), p.stem) for p in paths]
        copies = [(Augmented(str(p), 1, augment_seed(p.stem, 1), every), p.stem + "@aug1") for p in paths]
        for label, items in (("patches only", plain), ("augmented (all 7 transforms) + patches", copies)):
            started = time.perf_counter()
            summary = embed_items(
                items, tmp / f"cache-{len(label)}", extractor=PatchExtractor(), workers=workers, progress=False
            )
            seconds = time.perf_counter() - started
            print(
                f"{label}: {summary['embedded']} clips in {seconds:.1f} s = {summary['embedded'] / seconds:.2f} clips/s"
            )


if __name__ == "__main__":
    main()
