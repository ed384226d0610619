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

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BASELINE_C = (0.01, 0.1)  # grid; the best on validation is reported (favours the baseline)
# 527 one-vs-rest fits cost ~6 min per C on 2 cores: only the C that won on `music`
BASELINE_C_FOR = {"527": (0.01,)}
# cross-validated tasks: each held-out fold's C is chosen on another fold from this grid (cheap on genre10)
CV_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def baseline(cfg, grid=BASELINE_C):
    """The baseline the heads are measured against: nested CV as the heads' (genre10), else C chosen on validation."""
    from tagger.training.baseline import logistic_baseline, nested_cv_baseline
    from tagger.training.dataset import load_split
    from tagger.training.metrics import macro_roc_auc

    task = cfg["data"]["task"]
    if int(cfg["data"]["cv_folds"]) > 1:
        return {"C": "per fold", **nested_cv_baseline(cfg, CV_GRID)}
    results = {}
    train, valid = load_split(cfg, "train"), load_split(cfg, "valid")
    for C in grid:
        score, probs = logistic_baseline(train, valid, task, C=C, return_scores=True)
        results[C] = {"mean": score, "roc_auc": macro_roc_auc(valid[2], probs)}
    best = max(results, key=lambda c: results[c]["mean"])
    return {"C": best, **results[best]}


def head_roc_auc(run_dir):
    """Macro ROC-AUC of a finished multi-label run on its validation split."""
    from tagger.training.evaluate import evaluate

    return evaluate(run_dir, split="valid", mode="head", plots=False)["macro_roc_auc"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("TAGGER_SHARED", str(ROOT.parent / "shared")))
    ap.add_argument("--only", default=None, help="vocabulary: 527, music or genre10")
    ap.add_argument("--heads", default=None, help="comma-separated heads to run (default: all)")
    ap.add_argument(
        "--table-only", action="store_true", help="train nothing: fill missing ROC-AUC values, rewrite the table"
    )
    args = ap.parse_args()
    os.chdir(ROOT)
    from tagger.datasets import audioset
    from tagger.training.config import load_config
    from tagger.training.train import train

    if not os.path.exists("data/audioset/index_genre10.csv"):
        audioset.prepare(os.path.join(args.shared, "data/audioset"), "data/audioset")
    out_path = ROOT / "experiments/results_audioset.json"
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    if args.table_only:
        fill_roc(results)
        out_path.write_text(json.dumps(results, indent=1))
        write_table(results)
        return
    for path in sorted(glob.glob("experiments/audioset_*.json")):
        name = os.path.splitext(os.path.basename(path))[0]
        vocab = name.split("_")[1]
        if args.only and vocab != args.only:
            continue
        if args.heads and name.split("_", 2)[2] not in args.heads.split(","):  # audioset_<vocab>_<head>
            continue
        cfg = load_config(path)
        started = time.perf_counter()
        metrics = train(cfg, f"runs/{name}", verbose=0)
        wall = time.perf_counter() - started
        head = {
            "score": metrics.get("valid_score", metrics.get("mean")),
            "std": metrics.get("std"),
            "fold_scores": metrics.get("fold_scores"),
            "wall_s": round(wall, 1),
            "best_epoch": metrics.get("best_epoch"),
        }
        if cfg["data"]["task"] == "multilabel":
            head["roc_auc"] = head_roc_auc(f"runs/{name}")
        if cfg["head"]["name"] == "ensemble":
            head.update(ensemble_summary(cfg, f"runs/{name}", metrics))
            head["wall_s"] = head["member_train_s"]  # its members may have trained in earlier invocations
        entry = results.setdefault(vocab, {"heads": {}})
        entry["heads"][cfg["head"]["name"]] = {**head, "config": path}
        if "baseline" not in entry:
            t0 = time.perf_counter()
            entry["baseline"] = baseline(cfg, grid=BASELINE_C_FOR.get(vocab, BASELINE_C))
            entry["baseline"]["wall_s"] = round(time.perf_counter() - t0, 1)
        entry["monitor"] = (
            "accuracy (nested 5-fold CV, grouped by video)"
            if cfg["data"]["cv_folds"] > 1
            else "macro PR-AUC (validation split)"
        )
        print(f"{name}: {head['score']:.4f} (baseline {entry['baseline']['mean']:.4f}) in {wall:.0f}s", flush=True)
        out_path.write_text(json.dumps(results, indent=1))
    write_table(results)


def _train_seconds(run_dir):
    """Seconds a run spent in training steps (history.csv; validation passes not counted)."""
    import pandas as pd

    return float(pd.read_csv(os.path.join(run_dir, "history.csv"))["seconds"].sum())


def ensemble_summary(cfg, run_dir, metrics):
    """An ensemble's row: what it chose and from what, each member's score, the cost of its members.

    Single split: the members' validation scores, every candidate subset's, the
    chosen members' refit schedules (so a head can be shipped from this record
    alone) and the split-half check of :func:`split_half`. Cross-validated: the
    members chosen for each held-out fold (on its selection fold).
    """
    folds = sorted(glob.glob(os.path.join(run_dir, "fold*")))
    members = sorted(glob.glob(os.path.join(run_dir, "members", "*"))) + sorted(
        glob.glob(os.path.join(run_dir, "fold*", "members", "*"))
    )
    out = {"member_train_s": round(sum(_train_seconds(m) for m in members), 1)}
    if folds:
        chosen = {}
        for select in sorted(glob.glob(os.path.join(run_dir, "fold*-select"))):
            ens = json.loads(pathlib.Path(select, "metrics.json").read_text())["ensemble"]
            chosen[os.path.basename(select)[: -len("-select")]] = ens["chosen"]
        return {**out, "chosen_per_fold": chosen}
    from tagger.training.runs import read_schedule

    ens = metrics["ensemble"]
    return {
        **out,
        "chosen": ens["chosen"],
        "member_scores": {n: m["valid_score"] for n, m in metrics["members"].items()},
        "candidates": ens["candidates"],
        "schedules": read_schedule(run_dir)["members"],
        "split_half": split_half(cfg, run_dir, list(metrics["members"])),
    }


def split_half(cfg, run_dir, names):
    """The selection scored where it chose nothing: the validation split cut in two halves by video.

    The subset is chosen (best_subset) on one half and scored on the other, and
    the other way round; the best single member is chosen and scored the same
    way. The members' epochs were still chosen on the whole validation split.
    """
    from sklearn.model_selection import GroupKFold

    from tagger.training import dataset
    from tagger.training.bundle import load_head
    from tagger.training.dataset import load_split
    from tagger.training.ensemble import average, choose
    from tagger.training.heads import predict_tracks
    from tagger.training.metrics import monitor_score

    task = cfg["data"]["task"]
    valid = load_split(cfg, "valid")
    videos = dataset.read_index(cfg["data"]["index"]).set_index("track_id").loc[valid.ids, "video_id"].to_numpy()
    preds = {
        n: predict_tracks(load_head(os.path.join(run_dir, "members", n), compile=False), valid.embeddings)
        for n in names
    }
    rows = []
    for pick, held in GroupKFold(n_splits=2).split(valid.y, groups=videos):
        on = lambda idx: {n: p[idx] for n, p in preds.items()}  # noqa: E731
        chosen = choose(task, valid.y[pick], on(pick), select="best_subset")[0]
        single = max(names, key=lambda n: monitor_score(task, valid.y[pick], preds[n][pick]))
        rows.append(
            {
                "chosen": chosen,
                "ensemble": monitor_score(task, valid.y[held], average([preds[n][held] for n in chosen])),
                "single": single,
                "single_score": monitor_score(task, valid.y[held], preds[single][held]),
                "n_held": int(len(held)),
            }
        )
    return rows


def fill_roc(results):
    """ROC-AUC for multi-label entries recorded before it was computed (heads: evaluate; baseline: refit best C)."""
    from tagger.training.config import load_config

    for vocab, entry in results.items():
        for head in entry["heads"].values():
            cfg = load_config(head["config"])
            if cfg["data"]["task"] == "multilabel" and "roc_auc" not in head:
                head["roc_auc"] = head_roc_auc(f"runs/{pathlib.Path(head['config']).stem}")
        if cfg["data"]["task"] == "multilabel" and "roc_auc" not in entry["baseline"]:
            wall = entry["baseline"].get("wall_s")
            entry["baseline"] = {**baseline(cfg, grid=(entry["baseline"]["C"],)), "wall_s": wall}


def write_table(results):
    lines = [
        "| task | metric | head | score | baseline (LogReg) | margin | ROC-AUC (head / baseline) | train wall time (CPU) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for vocab in ("music", "527", "genre10"):
        if vocab not in results:
            continue
        r = results[vocab]
        b = r["baseline"]
        chosen = f"C={b['C']}" if "fold_C" not in b else "C per fold: " + ", ".join(f"{c:g}" for c in b["fold_C"])
        bl = f"{b['mean']:.4f}" + (f" ± {b['std']:.4f}" if b.get("std") is not None else "") + f" ({chosen})"
        for head, h in sorted(r["heads"].items()):
            if head == "ensemble":  # what it averages and what it chose from (per held-out fold, when nested)
                if "chosen_per_fold" in h:
                    per_fold = "; ".join(" + ".join(c) for c in h["chosen_per_fold"].values())
                    head = f"ensemble, best subset per fold ({per_fold})"
                else:
                    head = f"ensemble: {' + '.join(h['chosen'])} (best subset of {', '.join(h['member_scores'])})"
            score = f"{h['score']:.4f}" + (f" ± {h['std']:.4f}" if h.get("std") is not None else "")
            roc = f"{h['roc_auc']:.4f} / {b['roc_auc']:.4f}" if "roc_auc" in h and "roc_auc" in b else "n/a"
            lines.append(
                f"| {vocab} | {r['monitor']} | {head} | {score} | {bl} | {h['score'] - b['mean']:+.4f} | {roc} | {h['wall_s']:.0f} s |"
            )
    readme = ROOT / "experiments/README.md"
    text = readme.read_text() if readme.exists() else "<!-- results:begin -->\n<!-- results:end -->\n"
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    readme.write_text(head + begin + "\n" + "\n".join(lines) + "\n" + end + tail)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
