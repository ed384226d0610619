"""``tagger evaluate``: per-tag metrics and plots, of a run on a split or of any model on your labelled clips."""

import os
import sys

from ..embedding import files
from ..exceptions import ParameterError
from ..tagging.api import describe
from ..training.evaluate import check_evaluation_folder, evaluate, evaluate_truth, predictions_from_jsonl
from . import options, startup
from .tag import tagger_from

__all__ = ["add_parser", "run"]


def add_parser(sub):
    p = sub.add_parser(
        "evaluate", help="per-tag metrics and plots: of a run on a split, or of any model on your labelled clips"
    )
    p.add_argument(
        "target",
        nargs="*",
        metavar="RUN | INPUT",
        help="a run folder; with --truth and --model, the clips to tag (files, folders, list files)",
    )
    p.add_argument(
        "--split",
        default=None,
        help="the index's split to score a run on (default: test where the index has one, else valid); a"
        " cross-validated run is scored on its held-out folds (folds)",
    )
    p.add_argument(
        "--mode",
        choices=("head", "soft", "hard"),
        default="head",
        help="clip scores: the head, or soft/hard voting over windows",
    )
    p.add_argument("--out", default=None, help="output folder (default RUN/eval/<split>-<mode>, or TRUTH-eval/)")
    p.add_argument(
        "--overwrite", action="store_true", help="--truth: replace an --out folder that holds another evaluation"
    )
    p.add_argument("--truth", default=None, metavar="TRUTH.csv", help="ground truth: path,labels with |-joined tags")
    p.add_argument(
        "--model",
        default=None,
        help="with --truth: tag the inputs with this model (shipped name, run or bundle folder, hf://OWNER/REPO)",
    )
    p.add_argument(
        "--predictions", default=None, metavar="TAGS.jsonl", help="with --truth: score a tagger tag JSONL output"
    )
    p.add_argument("--map", default=None, metavar="FILE", help="truth tag -> model tag (CSV truth,model or JSON)")
    p.add_argument(
        "--task",
        choices=("multilabel", "singlelabel"),
        default=None,
        help="with --predictions: the task (default: from the output's .meta.json, else multilabel)",
    )
    p.add_argument("--cache", default=None, metavar="CACHE", help="with --model: reuse/fill an embedding cache")
    options.add_allow_option(p)
    options.add_pca_option(p)
    options.add_embedding_options(p)
    p.set_defaults(func=run)


def run(args):
    if args.truth:
        return _against_truth(args)
    if args.predictions or args.model or args.map:
        raise ParameterError("--model, --predictions and --map go with --truth TRUTH.csv")
    if len(args.target) != 1:
        raise ParameterError(
            "tagger evaluate RUN takes one run folder (or --truth TRUTH.csv with --model/--predictions)"
        )
    startup.backend(args)
    summary = evaluate(args.target[0], split=args.split, mode=args.mode, out_dir=args.out)
    options.print_scores(summary, f"({summary['split']}, {args.mode})")
    return options.EXIT_OK


def _scores(args):
    """What is scored against the truth: from a tag JSONL output, or from tagging the inputs with ``--model``."""
    if bool(args.predictions) == bool(args.model):
        raise ParameterError("--truth needs either --model MODEL with the clips to tag, or --predictions tags.jsonl")
    if args.predictions:
        if args.target:
            raise ParameterError(f"--predictions takes no inputs (got {args.target})")
        paths, labels, scores, chosen, task = predictions_from_jsonl(args.predictions)
        scored = dict(task=args.task or task or "multilabel", thresholds=None, chosen=chosen)
        return paths, scores, labels, dict(scored, source=_source(args)), []
    startup.backend(args)
    if not args.target:
        raise ParameterError("--model needs the clips to tag: tagger evaluate --model MODEL --truth TRUTH.csv INPUT...")
    tagger = tagger_from(args)
    items = files.collect(args.target, include=args.include, exclude=args.exclude)
    paths, scores, failed = tagger.clip_scores(items, workers=args.workers)
    scored = dict(task=tagger.task, thresholds=tagger.thresholds, chosen=None)
    return paths, scores, tagger.labels, dict(scored, source=_source(args)), failed


def _source(args):
    """What made the scores, as the evaluation records it: the predictions file, or the model and its content hash."""
    if args.predictions:
        return os.path.abspath(args.predictions)
    return f"model {args.model} ({describe(args.model).model_hash})"


def _against_truth(args):
    if bool(args.predictions) == bool(args.model):
        raise ParameterError("--truth needs either --model MODEL with the clips to tag, or --predictions tags.jsonl")
    # another evaluation in --out is refused before any clip is tagged
    check_evaluation_folder(args.out, truth_file=args.truth, source=_source(args), overwrite=args.overwrite)
    paths, scores, labels, scored, failed = _scores(args)
    summary = evaluate_truth(
        paths, scores, labels, args.truth, mapping_file=args.map, out_dir=args.out, overwrite=args.overwrite, **scored
    )
    summary["failed"] = [{"path": p, "error": e} for p, e in failed]
    options.print_scores(summary, f"-> {summary['out_dir']}")
    options.left_out(
        ("in the truth file but not predicted", summary["missing_from_predictions"]),
        ("predicted but not in the truth file", summary["not_in_truth"]),
        ("left out (no usable tag)", [e["path"] for e in summary["excluded"]]),
        ("failed to tag", [p for p, _ in failed]),
    )
    if summary["mapping_to_unknown_tags"]:
        print(f"--map targets outside the model's vocabulary: {summary['mapping_to_unknown_tags']}", file=sys.stderr)
    if summary["unknown_tags"]:
        print(
            f"truth tags outside the model's vocabulary (not scored; map them with --map): "
            f"{', '.join(f'{t} ({n})' for t, n in summary['unknown_tags'].items())}",
            file=sys.stderr,
        )
    return options.EXIT_SOME_FAILED if failed else options.EXIT_OK
