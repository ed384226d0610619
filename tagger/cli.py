"""The ``tagger`` command: parses arguments and calls the library. Nothing else.

Exit status: 0 success; 1 an error stopped the command (bad input, missing
weights, bad config); 2 bad command-line usage; 3 the command finished but
some files failed (listed in the errors file).
"""

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading

from . import __version__
from .embedding import params
from .exceptions import DataError, ParameterError, TaggerError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SOME_FAILED = 0, 1, 2, 3


def _add_embedding_options(p):
    p.add_argument(
        "--weights",
        default=None,
        help=f"VGGish SavedModel folder, vggish_model.ckpt or TF Hub handle (default ${params.WEIGHTS_ENV}, else {params.VGGISH_HUB_HANDLE})",
    )
    p.add_argument(
        "--hop",
        type=float,
        default=params.EXAMPLE_HOP_SECONDS,
        help="patch hop in seconds (0.96: no overlap; 0.48: 50%%)",
    )
    p.add_argument(
        "--short",
        choices=("pad", "skip"),
        default="pad",
        help="clips shorter than 0.96 s: zero-pad (warn) or skip (report)",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="patches per network call (default 64 on a CPU, 512 on a GPU)"
    )
    p.add_argument(
        "--precision",
        "--dtype",
        dest="precision",
        choices=("float32", "bfloat16", "float16", "auto"),
        default="auto",
        help="network compute precision (auto: float16 on a GPU, float32 on a CPU;"
        " bfloat16: this kind of CPU's fast path); recorded in cache entries",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decode processes (default: cores - 1, every core when a GPU runs the network; 0: in the main process)",
    )
    p.add_argument("--include", action="append", default=[], metavar="GLOB", help="only files matching (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip files matching (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_runner_options(p):
    p.add_argument(
        "--runner",
        default="local",
        metavar="RUNNER",
        help="local (default), beam (Apache Beam's DirectRunner here) or a Beam runner such as DataflowRunner;"
        " further Beam pipeline options (--project, --region, --temp_location ...) follow",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="with a Beam runner: print the pipeline graph and its options"
    )


def _beam_args(args):
    from .distributed import is_beam_runner

    if not is_beam_runner(args.runner):
        if args.dry_run:
            raise ParameterError("--dry-run goes with a Beam --runner")
        return False
    if not args.verbose:
        for handler in logging.getLogger().handlers:  # Beam's own start-up warnings, unless -v
            if _quiet_beam not in handler.filters:
                handler.addFilter(_quiet_beam)
    return True


def _quiet_beam(record):
    return record.levelno >= logging.ERROR or "apache_beam" not in record.pathname


def _beam_done(args, summary, line):
    """Print a Beam run's dry-run description, or its summary line; the exit status."""
    if args.dry_run:
        print(summary["description"])
        return EXIT_OK
    print(f"{line(summary)} ({args.runner})")
    return EXIT_SOME_FAILED if summary["failed"] else EXIT_OK


def _files_done(summary, line):
    """Print a file command's summary line (and where its failures are listed); the exit status."""
    print(line)
    if summary["failed"]:
        print(f"failures listed in {summary['errors_file']}", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


def _embedded_line(summary, out):
    return (
        f"embedded {summary['embedded']}, skipped {summary['skipped']} (already cached),"
        f" failed {summary['failed']} of {summary['total']} files -> {out}"
    )


def _progress(args):
    """The progress setting of a command: hidden with --no-progress, else tqdm's own choice (shown on a terminal)."""
    return False if args.no_progress else None


def _add_root_option(p):
    p.add_argument(
        "--root",
        default=None,
        metavar="DIR",
        help="cache track ids are file paths relative to DIR (default: the working folder)",
    )


def _add_allow_option(p):
    p.add_argument(
        "--allow-other-embedding",
        action="store_true",
        help="use a model with weights or PCA parameters other than those it was trained on (refused by default)",
    )


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _embedder(args, **extra):
    from .embedding.embed import Embedder

    return Embedder(
        args.weights,
        batch_size=args.batch_size,
        hop_seconds=args.hop,
        short_policy=args.short,
        dtype=args.precision,
        **extra,
    )


def cmd_embed(args):
    _tensorflow(args)
    from .embedding.embed import embed_files

    beam = _beam_args(args)
    embedder = _embedder(args, postprocess=args.postprocess, pca_params=args.pca)
    if beam:
        from .distributed import run_embed

        summary = run_embed(
            args.inputs,
            args.out,
            embedder=embedder,
            runner=args.runner,
            pipeline_args=args.pipeline_args,
            include=args.include,
            exclude=args.exclude,
            root=args.root,
            postprocess=args.postprocess,
            pca_params=args.pca,
            errors_file=args.errors,
            dry_run=args.dry_run,
        )
        return _beam_done(args, summary, lambda s: _embedded_line(s, args.out))
    summary = embed_files(
        args.inputs,
        args.out,
        embedder=embedder,
        overwrite=args.overwrite,
        workers=args.workers,
        include=args.include,
        exclude=args.exclude,
        root=args.root,
        errors_file=args.errors,
        progress=_progress(args),
    )
    return _files_done(summary, _embedded_line(summary, args.out))


def cmd_prepare(args):
    _tensorflow(args)
    # the one place the library reaches into preprocess/
    if args.dataset == "audioset":
        from preprocess import audioset

        written = audioset.prepare(
            args.source,
            args.out,
            vocabularies=args.vocabulary or audioset.VOCABULARIES,
            seed=args.seed,
            progress=_progress(args),
        )
        for vocab, path in written.items():
            print(f"{vocab}: {path}")
        return EXIT_OK
    if args.dataset == "gtzan" and os.path.isfile(args.source):  # a feature table, e.g. features_30_sec.csv
        from preprocess import gtzan

        splits = args.splits or os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(args.source))), "splits", "dnn-mgr"
        )
        path = gtzan.prepare_table(args.source, splits, args.out, split=args.split or "filtered", genres=args.genres)
        print(f"track index: {path}")
        return EXIT_OK
    if args.features and args.frontend != "vggish":
        raise ParameterError("--features and --frontend melspec are two different inputs: choose one")
    if args.no_embed:
        embedder = None
    elif args.features:
        from .features import FeatureExtractor

        embedder = FeatureExtractor()
    elif args.frontend in ("melspec", "melspec-course"):
        from .embedding.spectrogram import PatchExtractor

        course = args.frontend == "melspec-course"
        embedder = PatchExtractor(
            hop_seconds=args.hop, short_policy=args.short, frontend="course" if course else "vggish"
        )
    else:
        embedder = _embedder(args)
    augment = dict(augment=args.augment)
    if args.dataset == "folder":
        from preprocess import folder

        done = folder.prepare(
            args.source,
            args.out,
            labels=args.labels,
            layout=args.layout,
            group=args.group,
            task=args.task,
            valid=args.valid,
            test=args.test,
            seed=args.seed,
            root=args.root,
            embedder=embedder,
            workers=args.workers,
            progress=_progress(args),
            **augment,
        )
        print(
            f"track index: {done['index']} ({done['n_clips']} clips, {done['task']}, {len(done['vocabulary'])} labels;"
            f" embedded {done['embedded']}, reused {done['skipped']} from the cache)"
        )
        _left_out(
            ("without a label (left out)", done["unlabelled"]),
            ("labelled but not found", done["missing"]),
            ("that could not be decoded (left out; see the cache's errors.tsv)", [p for p, _ in done["failed"]]),
        )
        if done["fold_note"]:
            print(done["fold_note"], file=sys.stderr)
        return EXIT_SOME_FAILED if done["failed"] else EXIT_OK
    if args.dataset == "gtzan":
        from preprocess import gtzan

        splits = args.splits or os.path.join(
            os.path.dirname(os.path.abspath(args.source.rstrip("/"))), "splits", "dnn-mgr"
        )
        path = gtzan.prepare(
            args.source,
            splits,
            args.out,
            split=args.split or "filtered",
            genres=args.genres,
            embedder=embedder,
            workers=args.workers,
            root=args.root,
            progress=_progress(args),
            summary=True,
            **augment,
        )
    else:
        from preprocess import mtt

        if not args.annotations:
            raise ParameterError("tagger prepare mtt needs --annotations annotations_final.csv")
        path = mtt.prepare(
            args.annotations,
            args.source,
            args.out,
            which=(args.vocabulary or ["top50"])[0],
            embedder=embedder,
            workers=args.workers,
            root=args.root,
            progress=_progress(args),
            summary=True,
            **augment,
        )
    path, counts = path
    print(
        f"track index: {path} ({counts['indexed']} clips indexed; embedded {counts['embedded']}, reused"
        f" {counts['reused']} from the cache, failed {len(counts['failed'])}; {len(counts['missing'])} without audio)"
    )
    missing = "without audio (indexed, not embedded)" if args.dataset == "mtt" else "of the split lists without audio"
    _left_out(
        (missing, counts["missing"]),
        ("that could not be decoded (see the cache's errors.tsv)", [p for p, _ in counts["failed"]]),
    )
    if counts.get("fold_note"):
        print(counts["fold_note"], file=sys.stderr)
    return EXIT_SOME_FAILED if counts["failed"] else EXIT_OK


def _left_out(*groups):
    """Print, on standard error, each group of clips a command left out: its count and the first few."""
    for what, items in groups:
        if items:
            print(
                f"{len(items)} clips {what}: {', '.join(map(str, items[:5]))}{' ...' if len(items) > 5 else ''}",
                file=sys.stderr,
            )


def cmd_features(args):
    from .features import features_to_file

    summary = features_to_file(
        args.inputs,
        args.out,
        include=args.include,
        exclude=args.exclude,
        root=args.root,
        workers=args.workers,
        errors_file=args.errors,
        progress=_progress(args),
        overwrite=args.overwrite,
    )
    return _files_done(
        summary,
        f"extracted {summary['extracted']}, skipped {summary['skipped']} (done before), failed {summary['failed']}"
        f" of {summary['total']} files -> {args.out}",
    )


def cmd_tune(args):
    from .training.config import load_config
    from .training.tune import main_summary, tune

    cfg = load_config(args.config)  # a bad config or search range fails before TensorFlow loads
    _tensorflow(args)
    study_dir = args.study_dir or os.path.join(
        "studies", cfg["name"] or os.path.splitext(os.path.basename(args.config))[0]
    )
    summary = tune(cfg, study_dir, trials=args.trials, timeout=args.timeout, verbose=0 if args.quiet else 1)
    print(f"study folder: {study_dir}")
    print(main_summary(summary))
    return EXIT_OK


def cmd_train(args):
    from .training.config import load_config
    from .training.train import train

    cfg = load_config(args.config)  # a bad config fails before TensorFlow loads
    _tensorflow(args)
    run_dir = args.run_dir or os.path.join("runs", cfg["name"])
    metrics = train(cfg, run_dir, verbose=0 if args.quiet else 1)
    print(f"run folder: {run_dir}")
    print(json.dumps(metrics, indent=1))
    return EXIT_OK


def cmd_evaluate(args):
    if args.truth:
        return _evaluate_truth(args)
    if args.predictions or args.model or args.map:
        raise ParameterError("--model, --predictions and --map go with --truth TRUTH.csv")
    if len(args.target) != 1:
        raise ParameterError(
            "tagger evaluate RUN takes one run folder (or --truth TRUTH.csv with --model/--predictions)"
        )
    _tensorflow(args)
    from .training.evaluate import evaluate

    summary = evaluate(args.target[0], split=args.split, mode=args.mode, out_dir=args.out)
    keys = [k for k in ("macro_roc_auc", "macro_pr_auc", "micro_f1", "accuracy", "macro_f1") if k in summary]
    print(
        ", ".join(f"{k} {summary[k]:.4f}" for k in keys) + f" on {summary['n_clips']} clips ({args.split}, {args.mode})"
    )
    return EXIT_OK


def _evaluate_truth(args):
    import numpy as np

    from .embedding import files
    from .training.evaluate import evaluate_truth, predictions_from_jsonl

    if bool(args.predictions) == bool(args.model):
        raise ParameterError("--truth needs either --model MODEL with the clips to tag, or --predictions tags.jsonl")
    failed = []
    if args.predictions:
        if args.target:
            raise ParameterError(f"--predictions takes no inputs (got {args.target})")
        paths, labels, scores, chosen, task = predictions_from_jsonl(args.predictions)
        thresholds, source = None, os.path.abspath(args.predictions)
        task = args.task or task or "multilabel"
    else:
        _tensorflow(args)
        from .tagging.api import Tagger

        if not args.target:
            raise ParameterError(
                "--model needs the clips to tag: tagger evaluate --model MODEL --truth TRUTH.csv INPUT..."
            )
        tagger = Tagger(
            args.model,
            weights=args.weights,
            pca_params=args.pca,
            cache_dir=args.cache,
            batch_size=args.batch_size,
            hop_seconds=args.hop,
            short_policy=args.short,
            dtype=args.precision,
            allow_other_embedding=args.allow_other_embedding,
        )
        items = files.collect(args.target, include=args.include, exclude=args.exclude)
        paths, rows = [], []
        for r in tagger.iter_tag(items, workers=args.workers, taggram=False):
            if r.ok:
                paths.append(r.path)
                rows.append(r.probabilities)
            else:
                failed.append((r.path, r.error))
        if not rows:
            raise DataError("no clip could be tagged: " + "; ".join(f"{p}: {e}" for p, e in failed[:3]))
        labels, scores, chosen, thresholds = tagger.labels, np.stack(rows), None, tagger.thresholds
        task, source = tagger.task, f"model {args.model} ({tagger.model_hash})"
    summary = evaluate_truth(
        paths,
        scores,
        labels,
        args.truth,
        task=task,
        thresholds=thresholds,
        chosen=chosen,
        mapping_file=args.map,
        out_dir=args.out,
        source=source,
    )
    summary["failed"] = [{"path": p, "error": e} for p, e in failed]
    keys = [k for k in ("macro_roc_auc", "macro_pr_auc", "micro_f1", "accuracy", "macro_f1") if k in summary]
    print(", ".join(f"{k} {summary[k]:.4f}" for k in keys) + f" on {summary['n_clips']} clips -> {summary['out_dir']}")
    for what, items in (
        ("in the truth file but not predicted", summary["missing_from_predictions"]),
        ("predicted but not in the truth file", summary["not_in_truth"]),
        ("left out (no usable tag)", [e["path"] for e in summary["excluded"]]),
        ("failed to tag", [p for p, _ in failed]),
    ):
        if items:
            print(
                f"{len(items)} clips {what}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}", file=sys.stderr
            )
    if summary["mapping_to_unknown_tags"]:
        print(f"--map targets outside the model's vocabulary: {summary['mapping_to_unknown_tags']}", file=sys.stderr)
    if summary["unknown_tags"]:
        print(
            f"truth tags outside the model's vocabulary (not scored; map them with --map): "
            f"{', '.join(f'{t} ({n})' for t, n in summary['unknown_tags'].items())}",
            file=sys.stderr,
        )
    return EXIT_SOME_FAILED if failed else EXIT_OK


def cmd_tag(args):
    _tensorflow(args)
    from .tagging.api import Tagger
    from .tagging.writer import tag_to_file

    fmt = args.format or (
        "jsonl" if args.out.endswith((".jsonl", ".json")) else "parquet" if args.out.endswith(".parquet") else "csv"
    )
    if _beam_args(args):
        from .distributed import run_tag
        from .tagging.api import Head

        head = Head(args.model)
        if head.features:
            raise ParameterError(
                f"model {args.model!r} tags handcrafted features; the Beam pipeline runs VGGish heads only"
            )
        embedder = _embedder(args, postprocess=head.postprocess, pca_params=args.pca)
        summary = run_tag(
            args.inputs,
            args.out,
            model=args.model,
            embedder=embedder,
            runner=args.runner,
            pipeline_args=args.pipeline_args,
            fmt=fmt,
            top_n=args.top_n,
            threshold=args.threshold,
            cache_dir=args.cache,
            include=args.include,
            exclude=args.exclude,
            root=args.root,
            pca_params=args.pca,
            errors_file=args.errors,
            dry_run=args.dry_run,
            allow_other_embedding=args.allow_other_embedding,
        )
        return _beam_done(
            args,
            summary,
            lambda s: f"tagged {s['tagged']}, failed {s['failed']} of {s['total']} files -> {s['shards']}",
        )
    if fmt == "parquet":
        raise ParameterError("Parquet output comes from the Beam pipeline: add --runner beam (or write .csv / .jsonl)")
    tagger = Tagger(
        args.model,
        weights=args.weights,
        pca_params=args.pca,
        cache_dir=args.cache,
        batch_size=args.batch_size,
        hop_seconds=args.hop,
        short_policy=args.short,
        dtype=args.precision,
        allow_other_embedding=args.allow_other_embedding,
    )
    summary = tag_to_file(
        tagger,
        args.inputs,
        args.out,
        fmt=fmt,
        top_n=args.top_n,
        threshold=args.threshold,
        taggram_dir=args.taggram,
        errors_file=args.errors,
        include=args.include,
        exclude=args.exclude,
        workers=args.workers,
        progress=_progress(args),
        overwrite=args.overwrite,
        root=args.root,
    )
    return _files_done(
        summary,
        f"tagged {summary['tagged']}, skipped {summary['skipped']} (done before), failed {summary['failed']}"
        f" of {summary['total']} files -> {args.out}",
    )


def build_parser():
    parser = argparse.ArgumentParser(prog="tagger", description="Music tagging with transfer learning from VGGish.")
    parser.add_argument("--version", action="version", version=f"tagger {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more, TensorFlow's start-up lines included")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("embed", help="audio files -> cached VGGish embeddings (one pickle per track)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders (recursive) or list files")
    p.add_argument("--out", required=True, metavar="CACHE", help="cache folder")
    p.add_argument("--postprocess", action="store_true", help="PCA-whiten and quantise to uint8 (official parameters)")
    p.add_argument("--pca", default=None, help=f"vggish_pca_params.npz (default ${params.PCA_PARAMS_ENV})")
    p.add_argument("--overwrite", action="store_true", help="re-embed tracks already in the cache")
    p.add_argument("--errors", default=None, metavar="FILE", help="failures file (default CACHE/errors.tsv)")
    _add_embedding_options(p)
    _add_root_option(p)
    _add_runner_options(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("prepare", help="dataset -> track index + embedding cache")
    p.add_argument("dataset", choices=("audioset", "gtzan", "mtt", "folder"))
    p.add_argument(
        "source",
        help="audioset: folder with bal_train/ and the class files; gtzan: the genres/ folder; mtt: the"
        " audio folder; folder: your audio folder",
    )
    p.add_argument("--out", required=True, help="output folder (index, vocabulary, cache/)")
    p.add_argument(
        "--vocabulary",
        action="append",
        help="audioset: 527, music, genre10 (repeatable; default all); mtt: top50 or all",
    )
    p.add_argument("--annotations", help="mtt: annotations_final.csv")
    p.add_argument("--splits", help="gtzan: folder of the split lists (default: ../splits/dnn-mgr beside genres/)")
    p.add_argument("--split", choices=("filtered", "stratified"), help="gtzan split (default filtered)")
    p.add_argument("--genres", choices=("all", "gtzan8"), default="all", help="gtzan genre subset")
    p.add_argument("--seed", type=int, default=0, help="audioset, folder: seed of the split and folds")
    p.add_argument("--labels", help="folder: labels table, path,labels with |-joined tags (and a --group column)")
    p.add_argument(
        "--layout",
        choices=("table", "genre"),
        default="table",
        help="folder: labels from --labels (table), or from AUDIO/<genre>/<clip> folders (genre)",
    )
    p.add_argument(
        "--group",
        default=None,
        metavar="COLUMN",
        help="folder: a labels-table column (artist, album) whose groups never straddle the split or the folds",
    )
    p.add_argument(
        "--task",
        choices=("auto", "multilabel", "singlelabel"),
        default="auto",
        help="folder: multi- or single-label (auto: multi-label when a clip has several labels)",
    )
    p.add_argument("--valid", type=float, default=0.15, help="folder: share of groups (or clips) for validation")
    p.add_argument("--test", type=float, default=0.15, help="folder: share of groups (or clips) for testing")
    _add_root_option(p)
    p.add_argument("--no-embed", action="store_true", help="gtzan/mtt: write the index only")
    p.add_argument(
        "--features",
        action="store_true",
        help="cache the 57 handcrafted features of each track instead of VGGish embeddings (gtzan and mtt;"
        " gtzan also takes a feature table such as features_30_sec.csv as its source)",
    )
    p.add_argument(
        "--frontend",
        choices=("vggish", "melspec", "melspec-course"),
        default="vggish",
        help="vggish: cache VGGish embeddings (default); melspec: cache the 96 x 64 log-mel patches"
        " (float16, 381 KB per 30 s clip) for the CNN heads and fine-tuning; melspec-course: the course projects'"
        " 128 x 128 patches (22,050 Hz, FFT 1024, hop 512, 128 mels; 360 KB per 30 s clip)",
    )
    p.add_argument(
        "--augment",
        type=int,
        default=0,
        metavar="N",
        help="gtzan/mtt: also cache N augmented copies of every training track (noise, shift, speed, pitch,"
        " pitch+speed, gain, percussive; p = 0.25 each)",
    )
    _add_embedding_options(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("features", help="audio files -> the 57 handcrafted GTZAN features, one table row per file")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders (recursive) or list files")
    p.add_argument(
        "--out", required=True, metavar="FILE", help="feature table: .csv (rows appended as files finish) or .parquet"
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: cores - 1; 0: in the main process)")
    p.add_argument("--include", action="append", default=[], metavar="GLOB", help="only files matching (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip files matching (repeatable)")
    p.add_argument("--errors", default=None, metavar="FILE", help="failures file (default OUT.errors.tsv)")
    p.add_argument("--overwrite", action="store_true", help="start OUT afresh")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_root_option(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("tune", help="hyper-parameter search (Optuna) over a config's search ranges")
    p.add_argument("config", help="experiment config (JSON) with a search section")
    p.add_argument(
        "--trials",
        type=_positive_int,
        default=20,
        help="finished trials per study (default 20; a rerun adds the missing ones)",
    )
    p.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    p.add_argument(
        "--study-dir", default=None, help="study folder (default studies/<config name>); an existing one resumes"
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("train", help="train a head from an experiment config into a run folder")
    p.add_argument("config", help="experiment config (JSON), e.g. experiments/audioset_music_dense.json")
    p.add_argument("--run-dir", default=None, help="run folder (default runs/<config name>); an existing one resumes")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tag", help="tag audio files with a shipped head or a run folder")
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="audio files, folders (recursive) or list files (.txt, .m3u)"
    )
    p.add_argument("--model", default="music", help="shipped head (music, genre10) or a run folder (default music)")
    p.add_argument(
        "--out",
        default="tags.csv",
        help="output file: .csv (default) or .jsonl; rerunning with the same settings continues it",
    )
    p.add_argument(
        "--format",
        choices=("csv", "jsonl", "parquet"),
        default=None,
        help="default: from --out's extension (parquet: with --runner beam)",
    )
    p.add_argument("--top-n", type=_positive_int, default=5, help="top tags per clip in the CSV")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="one threshold for every tag (default: the model's per-tag thresholds)",
    )
    p.add_argument("--taggram", default=None, metavar="DIR", help="also write per-patch predictions as DIR/<clip>.npz")
    p.add_argument(
        "--cache", default=None, metavar="CACHE", help="reuse/fill an embedding cache (re-tagging skips the network)"
    )
    p.add_argument("--pca", default=None, help=f"vggish_pca_params.npz (default ${params.PCA_PARAMS_ENV})")
    p.add_argument("--errors", default=None, metavar="FILE", help="failures file (default OUT.errors.tsv)")
    p.add_argument(
        "--overwrite", action="store_true", help="start OUT afresh (a rerun with other settings is refused without it)"
    )
    _add_allow_option(p)
    _add_embedding_options(p)
    _add_root_option(p)
    _add_runner_options(p)
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser(
        "evaluate", help="per-tag metrics and plots: of a run on a split, or of any model on your labelled clips"
    )
    p.add_argument(
        "target",
        nargs="*",
        metavar="RUN | INPUT",
        help="a run folder; with --truth and --model, the clips to tag (files, folders, list files)",
    )
    p.add_argument("--split", default="test")
    p.add_argument(
        "--mode",
        choices=("head", "soft", "hard"),
        default="head",
        help="clip scores: the head, or soft/hard voting over windows",
    )
    p.add_argument("--out", default=None, help="output folder (default RUN/eval/<split>-<mode>, or TRUTH-eval/)")
    p.add_argument("--truth", default=None, metavar="TRUTH.csv", help="ground truth: path,labels with |-joined tags")
    p.add_argument(
        "--model", default=None, help="with --truth: tag the inputs with this model (shipped name or run folder)"
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
    _add_allow_option(p)
    p.add_argument("--pca", default=None, help=f"vggish_pca_params.npz (default ${params.PCA_PARAMS_ENV})")
    _add_embedding_options(p)
    p.set_defaults(func=cmd_evaluate)
    return parser


# TensorFlow's native start-up lines (glog INFO/WARNING, the absl banner, CUDA probing on machines
# without a GPU): written to file descriptor 2 while it loads, whatever TF_CPP_MIN_LOG_LEVEL says
_STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} \S+ +\d+ \S+:\d+\] "
    r"|E\d{4} \S+ +\d+ \S+:\d+\] .*(cuInit|cuda|CUDA)"
    r"|To enable the following instructions: )"
)


@contextlib.contextmanager
def _without_startup_noise():
    """Send file descriptor 2 to a temporary file; then replay what was not start-up noise (real errors)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not _STARTUP_NOISE.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def _tensorflow(args):
    """Called by each command where it first needs TensorFlow: its start-up lines stay hidden unless -v."""
    if not args.verbose and "tensorflow" not in sys.modules:
        _load_tensorflow_quietly()


def _load_tensorflow_quietly():
    """Load TensorFlow and Keras, and probe devices, with their native start-up lines hidden."""
    with _without_startup_noise():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe prints its lines now, not mid-command
        import keras  # noqa: F401

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # deprecation chatter of the checkpoint reader


def main(argv=None):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "runner", "local") == "local":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pipeline_args = extra  # Beam pipeline options, for --runner beam / DataflowRunner
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # a preempted spot VM's shutdown sends SIGTERM: handled as Ctrl-C (finished work kept, rerun continues)
    previous = (
        signal.signal(signal.SIGTERM, _terminated) if threading.current_thread() is threading.main_thread() else None
    )
    try:
        return args.func(args)
    except TaggerError as exc:
        print(f"tagger {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        how = "terminated (SIGTERM)" if isinstance(exc, _Terminated) else "interrupted"
        print(f"tagger {args.command}: {how}; finished work is kept, rerun to continue", file=sys.stderr)
        return 143 if isinstance(exc, _Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so it unwinds as Ctrl-C does."""


def _terminated(signum, frame):
    # one SIGTERM is enough: a shutdown often sends a second (to the process group, and again from a parent that
    # forwards it), which must not interrupt the unwinding and the message of the first
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Terminated()
