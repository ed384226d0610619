"""tagger features against the GTZAN feature table on the ten shared tracks: per feature, median and largest relative difference.

    python experiments/gtzan_feature_check.py [--shared ../shared]

The table was computed from Kaggle's 22,050 Hz .wav copy of GTZAN; the shared
tracks are the original .au files (the same samples: every `length` agrees).
"""

import argparse
import glob
import os
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main():
    import numpy as np
    import pandas as pd

    from tagger.embedding.features import FEATURE_NAMES, features_to_file, read_table

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", default=os.environ.get("TAGGER_SHARED", str(ROOT.parent / "shared")))
    args = ap.parse_args()
    tracks = sorted(glob.glob(os.path.join(args.shared, "data/gtzan/genres/*/*.au")))
    with tempfile.TemporaryDirectory() as tmp:
        features_to_file(tracks, os.path.join(tmp, "f.csv"), progress=False)
        got = pd.read_csv(os.path.join(tmp, "f.csv"))
    table = read_table(os.path.join(args.shared, "data/gtzan/features/features_30_sec.csv"))
    ref = table.set_index(table["filename"].str.replace(".wav", "", regex=False))
    ref = ref.loc[got["filename"].str.replace(".au", "", regex=False)]
    print(f"{len(got)} tracks; lengths equal: {bool((got['length'].to_numpy() == ref['length'].to_numpy()).all())}")
    print("| feature | median rel. diff | max rel. diff |\n|---|---|---|")
    for name in FEATURE_NAMES:
        a, b = got[name].to_numpy(), ref[name].to_numpy()
        rel = np.abs(a - b) / np.abs(b)
        print(f"| {name} | {np.median(rel):.1e} | {rel.max():.1e} |")


if __name__ == "__main__":
    main()
