"""Run the AudioSet experiments and write the results table.

    python experiments/run_audioset.py [--shared ../shared] [--only music]

Prepares ``data/audioset`` from the released features when needed, trains
every ``experiments/audioset_*.json`` into ``runs/<name>``, fits the
logistic-regression baseline on mean-pooled embeddings of the same splits
(or folds), and writes ``experiments/results_audioset.json`` plus the table
between the markers in ``experiments/README.md``.
"""

import argparse
import glob
import json
import os
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BASELINE_C = (0.01, 0.1)  # grid; the best on validation is reported (favours the baseline)


def baseline(cfg):
    from tagger.baseline import logistic_baseline
    from tagger.train import load_split

    task = cfg["data"]["task"]
    folds = int(cfg["data"]["cv_folds"])
    results = {}
    for C in BASELINE_C:
        if folds > 1:
            scores = [logistic_baseline(load_split(cfg, None, exclude_fold=k), load_split(cfg, None, fold=k), task, C=C) for k in range(folds)]
            results[C] = {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "fold_scores": scores}
        else:
            results[C] = {"mean": logistic_baseline(load_split(cfg, "train"), load_split(cfg, "valid"), task, C=C)}
    best = max(results, key=lambda c: results[c]["mean"])
    return {"C": best, **results[best]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("TAGGER_SHARED", str(ROOT.parent / "shared")))
    ap.add_argument("--only", default=None, help="vocabulary: 527, music or genre10")
    args = ap.parse_args()
    os.chdir(ROOT)
    from preprocess import audioset
    from tagger.config import load_config
    from tagger.train import train

    if not os.path.exists("data/audioset/index_genre10.csv"):
        audioset.prepare(os.path.join(args.shared, "data/audioset"), "data/audioset")
    out_path = ROOT / "experiments/results_audioset.json"
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    for path in sorted(glob.glob("experiments/audioset_*.json")):
        name = os.path.splitext(os.path.basename(path))[0]
        vocab = name.split("_")[1]
        if args.only and vocab != args.only:
            continue
        cfg = load_config(path)
        started = time.perf_counter()
        metrics = train(cfg, f"runs/{name}", verbose=0)
        wall = time.perf_counter() - started
        head = {"score": metrics.get("valid_score", metrics.get("mean")), "std": metrics.get("std"),
                "fold_scores": metrics.get("fold_scores"), "wall_s": round(wall, 1), "best_epoch": metrics.get("best_epoch")}
        entry = results.setdefault(vocab, {"heads": {}})
        entry["heads"][cfg["head"]["name"]] = {**head, "config": path}
        if "baseline" not in entry:
            t0 = time.perf_counter()
            entry["baseline"] = baseline(cfg)
            entry["baseline"]["wall_s"] = round(time.perf_counter() - t0, 1)
        entry["monitor"] = "accuracy (5-fold CV, grouped by video)" if cfg["data"]["cv_folds"] > 1 else "macro PR-AUC (validation split)"
        print(f"{name}: {head['score']:.4f} (baseline {entry['baseline']['mean']:.4f}) in {wall:.0f}s", flush=True)
        out_path.write_text(json.dumps(results, indent=1))
    write_table(results)


def write_table(results):
    lines = ["| task | metric | head | score | baseline (LogReg) | margin | train wall time (CPU) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for vocab in ("music", "527", "genre10"):
        if vocab not in results:
            continue
        r = results[vocab]
        b = r["baseline"]
        bl = f"{b['mean']:.4f}" + (f" ± {b['std']:.4f}" if b.get("std") is not None else "") + f" (C={b['C']})"
        for head, h in sorted(r["heads"].items()):
            score = f"{h['score']:.4f}" + (f" ± {h['std']:.4f}" if h.get("std") is not None else "")
            lines.append(f"| {vocab} | {r['monitor']} | {head} | {score} | {bl} | {h['score'] - b['mean']:+.4f} | {h['wall_s']:.0f} s |")
    readme = ROOT / "experiments/README.md"
    text = readme.read_text() if readme.exists() else "<!-- results:begin -->\n<!-- results:end -->\n"
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    readme.write_text(head + begin + "\n" + "\n".join(lines) + "\n" + end + tail)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
