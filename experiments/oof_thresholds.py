"""Per-tag thresholds of the shipped `music` head from out-of-fold predictions.

    python experiments/oof_thresholds.py [--shared ../shared] [--folds 5]

The shipped head is trained on all of train + valid, so thresholds chosen on
its own predictions of that data (as before) are chosen on training data.
Here train + valid is cut into folds grouped by video; for each fold a head
of the shipped recipe (same config, the shipped number of epochs) is trained
on the other folds and predicts the held-out one. The thresholds shipped are
those maximising each tag's F1 on the pooled out-of-fold predictions. Their
held-out quality is measured without choosing on the data it is scored on:
for each fold, thresholds chosen on the other folds' out-of-fold predictions
score that fold (cross-validated selection); the old thresholds are scored on
the same predictions. Results: ``experiments/results_thresholds.json``, the
bundle's ``thresholds.json`` and ``metrics.json``. Resumable (each fold is a
run folder under ``runs/oof_music/``; ``--only 0,2`` trains some folds and
stops, so folds can run in parallel processes before a last run collects them).
"""

import argparse
import json
import os
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def f1_summary(y, scores, thresholds):
    """Macro F1 over tags with positives, and micro F1, of hard predictions at ``thresholds``."""
    from sklearn.metrics import f1_score

    pred = (scores >= thresholds[None, :]).astype(int)
    cols = np.flatnonzero(y.sum(0) > 0)
    return {
        "macro_f1": float(f1_score(y[:, cols], pred[:, cols], average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
        "n_tags": int(len(cols)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("TAGGER_SHARED", str(ROOT.parent / "shared")))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--task", default="music")
    ap.add_argument(
        "--only",
        default=None,
        help="comma-separated folds to train, then stop (to run folds in parallel processes; a last run without it"
        " reuses the finished folds and writes the thresholds)",
    )
    args = ap.parse_args()
    only = [] if args.only is None else args.only.split(",")
    if not all(k.strip().isdigit() and int(k) < args.folds for k in only):
        ap.error(f"--only {args.only!r}: folds are numbered 0 to {args.folds - 1}")
    chosen = range(args.folds) if args.only is None else sorted({int(k) for k in only})
    os.chdir(ROOT)
    from sklearn.model_selection import GroupKFold

    from tagger.datasets import audioset
    from tagger.records import write_json_atomic
    from tagger.training import bundle
    from tagger.training import card as cards
    from tagger.training.config import load_config
    from tagger.training.dataset import Dataset, join_splits
    from tagger.training.evaluate import load_run
    from tagger.training.heads import predict_tracks
    from tagger.training.metrics import choose_thresholds
    from tagger.training.train import fit

    if not os.path.exists("data/audioset/index_genre10.csv"):
        audioset.prepare(os.path.join(args.shared, "data/audioset"), "data/audioset")
    folder = bundle.resolve(args.task)
    shipped = json.loads(pathlib.Path(folder, "metrics.json").read_text())
    cfg = load_config(shipped["experiment"]["config"])
    labels, old_thresholds = bundle.read_labels(folder)
    data = Dataset(cfg)
    every = join_splits(data.split("train"), data.split("valid"), where=cfg["data"]["cache"])
    y = every.y
    groups = data.index.set_index("track_id").loc[every.ids, "video_id"].to_numpy()
    folds = np.zeros(len(every.ids), int)
    for k, (_, held) in enumerate(GroupKFold(n_splits=args.folds).split(np.zeros(len(every.ids)), groups=groups)):
        folds[held] = k
    # the shipped head's recipe: its config and epoch count; the bundle keeps no record of its learning-rate
    # cuts, so these heads run the config's learning rate throughout (EMA as configured); an ensemble's
    # members each run their own config's
    if "members" in shipped:
        schedule = {
            "members": {
                n: [float(load_config(m["config"])["optimizer"]["learning_rate"])] * int(m["epochs"])
                for n, m in shipped["members"].items()
            }
        }
        epochs = {n: int(m["epochs"]) for n, m in shipped["members"].items()}
    else:
        epochs = int(shipped["epochs"])
        schedule = [float(cfg["optimizer"]["learning_rate"])] * epochs
    oof = np.zeros(y.shape, np.float32)
    for k in chosen:
        held = np.flatnonzero(folds == k)
        rest = np.flatnonzero(folds != k)
        run = f"runs/oof_{args.task}/fold{k}"
        fit(cfg, run, train_data=every.take(rest), valid_data=every.take(held), schedule=schedule, verbose=0)
        model = load_run(run)[0]
        oof[held] = predict_tracks(model, every.take(held).embeddings)
        print(f"fold {k}: {len(rest)} train, {len(held)} held out", flush=True)
    if args.only is not None:
        print(f"folds {list(chosen)} trained; run again without --only to write the thresholds")
        return
    # held-out quality of each way of choosing thresholds, on the same out-of-fold predictions
    crossed = np.zeros(y.shape, np.float32)
    for k in range(args.folds):
        others = folds != k
        crossed[folds == k] = oof[folds == k] >= choose_thresholds(y[others], oof[others])[None, :]
    new_thresholds = choose_thresholds(y, oof)
    result = {
        "task": args.task,
        "folds": args.folds,
        "grouped_by": "video_id",
        "n_clips": int(len(every.ids)),
        "epochs": epochs,
        "old": {
            "chosen_on": "the shipped head's own training data (train + valid)",
            **f1_summary(y, oof, old_thresholds),
        },
        "new_cross_validated": {
            "chosen_on": "out-of-fold predictions of the other folds",
            **f1_summary(y, crossed, np.full(len(labels), 0.5)),
        },
        "new_in_sample": {
            "chosen_on": "all out-of-fold predictions (optimistic: chosen and scored on the same)",
            **f1_summary(y, oof, new_thresholds),
        },
    }
    write_json_atomic(result, ROOT / "experiments/results_thresholds.json")
    write_json_atomic(dict(zip(labels, map(float, new_thresholds))), pathlib.Path(folder, "thresholds.json"))
    shipped["thresholds"] = {
        "chosen_on": f"out-of-fold predictions: AudioSet bal_train train + valid in {args.folds} folds grouped by video,"
        f" a head of this recipe ({shipped['epochs']} epochs) trained on the other folds predicting each;"
        " per tag the F1-maximising threshold on the pooled predictions",
        "heldout_macro_f1": result["new_cross_validated"]["macro_f1"],
        "heldout_macro_f1_previous_thresholds": result["old"]["macro_f1"],
        "details": "experiments/results_thresholds.json",
    }
    write_json_atomic(shipped, pathlib.Path(folder, "metrics.json"))
    cards.write_card(folder, cards.shipped_card(folder, name=args.task))  # its thresholds line changed
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
