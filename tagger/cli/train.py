"""``tagger train`` and ``tagger tune``: a head from an experiment config, once or over a search."""

import json
import os

from ..training import starter
from ..training.config import load_config
from ..training.train import train
from ..training.tune import main_summary, tune
from . import options, startup

__all__ = ["add_parsers", "run_train", "run_tune"]


def add_parsers(sub):
    p = sub.add_parser("tune", help="hyper-parameter search (Optuna) over a config's search ranges")
    p.add_argument("config", help="experiment config (JSON) with a search section")
    p.add_argument(
        "--trials",
        type=options.positive_int,
        default=20,
        help="finished trials per study (default 20; a rerun adds the missing ones)",
    )
    p.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    p.add_argument(
        "--study-dir", default=None, help="study folder (default studies/<config name>); an existing one resumes"
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_tune)

    p = sub.add_parser(
        "train", help="train a head from an experiment config (or a prepared folder's starter config) into a run folder"
    )
    p.add_argument(
        "config",
        help="experiment config (JSON), e.g. experiments/audioset_music_dense.json, or a folder `tagger prepare`"
        " made (its starter config, train.json)",
    )
    p.add_argument("--run-dir", default=None, help="run folder (default runs/<config name>); an existing one resumes")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_train)


def run_tune(args):
    cfg = load_config(args.config)  # a bad config or search range fails before TensorFlow loads
    startup.backend(args)
    study_dir = args.study_dir or os.path.join(
        "studies", cfg["name"] or os.path.splitext(os.path.basename(args.config))[0]
    )
    summary = tune(cfg, study_dir, trials=args.trials, timeout=args.timeout, verbose=0 if args.quiet else 1)
    print(f"study folder: {study_dir}")
    print(main_summary(summary))
    return options.EXIT_OK


def run_train(args):
    if os.path.isdir(args.config):  # a prepared folder: its starter config
        path = starter.find_starter(args.config)
        print(f"config: {path}")
        cfg = starter.load_starter(path)
    else:
        cfg = load_config(args.config)  # a bad config fails before TensorFlow loads
    startup.backend(args)
    run_dir = args.run_dir or os.path.join("runs", cfg["name"])
    metrics = train(cfg, run_dir, verbose=0 if args.quiet else 1)
    print(f"run folder: {run_dir}")
    print(json.dumps(metrics, indent=1))
    return options.EXIT_OK
