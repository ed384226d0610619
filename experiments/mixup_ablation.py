"""Mixup against no mixup for the AudioSet heads, on validation only.

    python experiments/mixup_ablation.py [--runs music:attention:0,genre10:attention:0.4,...] [--table-only]

Each run is an ``experiments/audioset_<task>_<head>.json`` config trained as
it is but for its ``mixup`` key (the α of Beta(α, α); 0 is off), into
``runs/mixup/audioset_<task>_<head>-mixup<α>``, and scored by the task's own
protocol (macro PR-AUC on the validation split; nested 5-fold CV accuracy for
``genre10``). The recipe's own run (the other α) is read from
``experiments/results_audioset.json``, so the two sit side by side in
``experiments/results_mixup.json`` (merged, one entry per run: runs can be
made in separate invocations) and in the table this prints and writes between the ``mixup`` markers of
``experiments/README.md``. For a cross-validated task it also makes the
choice among every candidate on each outer fold's selection fold and scores it on the held-out fold
(``<task>:nested_choice``): whether the candidates, chosen the project's way, beat the recipe's head.
"""

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: the music and 527 recipes mix with α = 0.4, the genre10 recipes do not mix: each is tried the other way
DEFAULT_RUNS = (
    "music:attention:0,music:feature_attention:0,music:multilevel_attention:0,"
    "genre10:attention:0.4,genre10:feature_attention:0.4,genre10:multilevel_attention:0.4"
)


def score(metrics):
    """(score, std or None) of a finished run's metrics: validation split or nested CV."""
    if "valid_score" in metrics:
        return metrics["valid_score"], None
    return metrics["mean"], metrics["std"]


def table(results):
    """The comparison as a Markdown table, one row per task and head."""
    rows = [
        "| task | head | recipe's α | recipe's score | other α | its score | difference |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    fmt = lambda s, sd: f"{s:.4f}" + (f" ± {sd:.4f}" if sd is not None else "")  # noqa: E731
    for entry in _runs(results):
        r, o = entry["recipe"], entry["ablation"]
        rows.append(
            f"| {entry['task']} | {entry['head']} | {r['mixup']} | {fmt(r['score'], r['std'])} | {o['mixup']} |"
            f" {fmt(o['score'], o['std'])} | {o['score'] - r['score']:+.4f} |"
        )
    return "\n".join(rows)


def _runs(results):
    """The entries of single runs (``task:head:alpha``), not the nested choices (``task:nested_choice``)."""
    return [e for e in results.values() if "ablation" in e]


def _select_score(task, head, k, run=None):
    """The score on outer fold k's selection fold of a nested run (its best epoch there): ``run``'s, else the
    recipe's own run (``runs/audioset_<task>_<head>``) or the same member of the task's ensemble run (the same
    config, data and seed)."""
    folder = pathlib.Path(run or f"runs/audioset_{task}_{head}", f"fold{k}-select")
    if run is None and not folder.exists():
        folder = pathlib.Path(f"runs/audioset_{task}_ensemble/fold{k}-select/members/{head}")
    return json.loads((folder / "metrics.json").read_text())["valid_score"]


def nested_choice(results, recorded):
    """Cross-validated tasks: choose among every candidate (each head with and without mixup) on each outer fold's
    selection fold, score the choice on that held-out fold, which chose nothing (the nested analogue of the
    split-half check)."""
    out = {}
    for task in sorted({e["task"] for e in _runs(results) if e["ablation"]["std"] is not None}):
        runs = {}  # candidate -> [(selection-fold score, held-out score) per outer fold]
        for e in (e for e in _runs(results) if e["task"] == task):
            held = recorded[task]["heads"][e["head"]]["fold_scores"]
            runs[f"{e['head']} (mixup {e['recipe']['mixup']:g})"] = [
                (_select_score(task, e["head"], k), score) for k, score in enumerate(held)
            ]
            run = e["ablation"]["run"]
            held = json.loads(pathlib.Path(run, "metrics.json").read_text())["fold_scores"]
            runs[f"{e['head']} (mixup {e['ablation']['mixup']:g})"] = [
                (_select_score(task, e["head"], k, run), score) for k, score in enumerate(held)
            ]
        folds = range(len(next(iter(runs.values()))))
        chosen = [max(runs, key=lambda n: runs[n][k][0]) for k in folds]
        held = [runs[n][k][1] for k, n in enumerate(chosen)]
        out[task] = {
            "candidates": sorted(runs),
            "chosen_per_fold": chosen,
            "fold_scores": held,
            "mean": float(np.mean(held)),
            "std": float(np.std(held)),
        }
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default=DEFAULT_RUNS, help="comma-separated task:head:alpha")
    ap.add_argument("--table-only", action="store_true", help="train nothing: print the table of the runs made")
    args = ap.parse_args()
    os.chdir(ROOT)
    from tagger.exceptions import ParameterError
    from tagger.records import write_json_atomic
    from tagger.training.config import load_config
    from tagger.training.train import train

    recorded = json.loads((ROOT / "experiments/results_audioset.json").read_text())
    out_path = ROOT / "experiments/results_mixup.json"
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    for spec in [] if args.table_only else args.runs.split(","):
        try:
            task, head, alpha = spec.split(":")
            alpha = float(alpha)
        except ValueError:
            raise ParameterError(f"--runs entry {spec!r}: expected task:head:alpha, e.g. music:attention:0") from None
        path = f"experiments/audioset_{task}_{head}.json"
        cfg = load_config(path)
        if float(cfg["mixup"]) == alpha:
            raise ParameterError(f"{path} already mixes with α={alpha}: its own run is the recipe's; name another α")
        recipe = recorded[task]["heads"][head]
        recipe = {"mixup": float(cfg["mixup"]), "score": recipe["score"], "std": recipe["std"]}
        cfg["mixup"] = alpha
        run = f"runs/mixup/audioset_{task}_{head}-mixup{alpha:g}"
        started = time.perf_counter()
        metrics = train(cfg, run, verbose=0)
        wall = round(time.perf_counter() - started, 1)
        s, sd = score(metrics)
        results[f"{task}:{head}:{alpha:g}"] = {
            "task": task,
            "head": head,
            "config": path,
            "recipe": recipe,
            "ablation": {"mixup": alpha, "score": s, "std": sd, "wall_s": wall, "run": run},
        }
        print(
            f"{task} {head} mixup {alpha:g}: {s:.4f} (recipe, mixup {recipe['mixup']:g}: {recipe['score']:.4f})"
            f" in {wall:.0f}s",
            flush=True,
        )
        write_json_atomic(results, str(out_path))
    lines = [table(results), ""]
    for task, choice in nested_choice(results, recorded).items():
        lines.append(
            f"`{task}:nested_choice`: chosen on each outer fold's selection fold among its"
            f" {len(choice['candidates'])} runs:"
            f" {'; '.join(choice['chosen_per_fold'])}; held-out {choice['mean']:.4f} ± {choice['std']:.4f}."
        )
        results[f"{task}:nested_choice"] = choice
    write_json_atomic(results, str(out_path))
    text = "\n".join(lines).rstrip()
    print(text)
    readme = ROOT / "experiments/README.md"
    start, end = "<!-- mixup:start -->", "<!-- mixup:end -->"
    before, rest = readme.read_text().split(start)
    readme.write_text(f"{before}{start}\n{text}\n{end}{rest.split(end, 1)[1]}")


if __name__ == "__main__":
    main()
