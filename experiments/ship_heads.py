"""Train the shipped `music`, `genre10` and `audioset527` heads on all of AudioSet's balanced train set.

    python experiments/ship_heads.py [--tasks music,genre10,527]

For each task, the best head of ``experiments/results_audioset.json`` is
retrained with the same config on train + valid (so no data is held out),
following the learning-rate schedule of its experiment up to the best epoch
(for a cross-validated task, the schedule of the fold with the median epoch
count), and its last epoch is exported into ``tagger/models/<name>/`` (the
task's name, ``audioset527`` for ``527``) with
the validation metrics it reached in the experiment. Its thresholds come from
predictions on its own training data: run ``experiments/oof_thresholds.py``
afterwards to replace the `music` head's with held-out (out-of-fold) ones.
"""

import argparse
import json
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHIPPED_AS = {"527": "audioset527"}  # a shipped name says what it is; "527" alone would not


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="music,genre10", help="comma-separated tasks to retrain and ship")
    tasks = ap.parse_args().tasks.split(",")
    os.chdir(ROOT)
    from tagger.training import bundle
    from tagger.training import card as cards
    from tagger.training.config import load_config
    from tagger.training.dataset import Dataset, join_splits, nested_folds
    from tagger.training.runs import read_schedule, schedule_epochs
    from tagger.training.train import fit

    results = json.loads((ROOT / "experiments/results_audioset.json").read_text())
    for task in tasks:
        heads = results[task]["heads"]
        best = max(heads, key=lambda h: heads[h]["score"])
        record = heads[best]
        cfg = load_config(record["config"])
        experiment = ROOT / "runs" / pathlib.Path(record["config"]).stem
        if "schedules" in record:  # an ensemble: the members it chose, each up to its best epoch, as recorded
            schedule = {"members": record["schedules"]}
        elif cfg["data"]["cv_folds"] > 1:
            schedules = sorted(
                (read_schedule(str(experiment / f"fold{k}-select")) for k, _ in nested_folds(cfg)), key=len
            )
            schedule = schedules[len(schedules) // 2]
        else:
            schedule = read_schedule(str(experiment))
        epochs = schedule_epochs(schedule)
        cfg["data"]["cv_folds"] = 0
        data = Dataset(cfg)
        valid = data.split("valid")
        every = join_splits(data.split("train", augmented=True), valid, where=cfg["data"]["cache"])
        run = f"runs/ship_{task}"
        # valid is part of the training data here: it is only scored, the last epoch is shipped
        fit(cfg, run, train_data=every, valid_data=valid, schedule=schedule, verbose=0)
        metrics = {
            "task": task,
            "head": best,
            "experiment": record,
            "baseline": results[task]["baseline"],
            "monitor": results[task]["monitor"],
            "trained_on": "AudioSet bal_train, train + valid",
            "epochs": epochs,
        }
        if isinstance(epochs, dict):  # what the card says of an ensemble: its members and how they were chosen
            metrics["head"] = " + ".join(epochs) + " ensemble"
            metrics["epochs"] = ", ".join(f"{n} {e}" for n, e in epochs.items())
            metrics["members"] = {n: {"config": cfg["head"]["members"][n], "epochs": e} for n, e in epochs.items()}
            metrics["selection"] = {
                "procedure": "best equally weighted subset of the members on the validation split (macro PR-AUC)",
                "member_scores": record["member_scores"],
                "candidates": record["candidates"],
                "split_half": record["split_half"],
            }
        (pathlib.Path(run) / "metrics.json").write_text(json.dumps(metrics, indent=1))
        name = SHIPPED_AS.get(task, task)
        folder = f"tagger/models/{name}"
        bundle.export(
            run,
            folder,
            embedding="postprocessed",
            task=cfg["data"]["task"],
            window=cfg["window"],
            note="trained on AudioSet's released VGGish features (PCA-whitened, quantised); raw VGGish output is postprocessed before this head",
        )
        cards.write_card(folder, cards.shipped_card(folder, name=name))  # derived from the files just written
        print(f"{name}: shipped {best} ({epochs} epochs) -> {folder}")
    if "music" in tasks:
        print("music: now run experiments/oof_thresholds.py for thresholds chosen on held-out predictions")


if __name__ == "__main__":
    main()
