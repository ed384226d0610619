"""``tagger tag``: audio files -> tags, with a shipped head or a run folder, into a resumable file."""

from .. import distributed
from ..embedding import extractor
from ..exceptions import ParameterError
from ..tagging import writer
from ..tagging.api import Head, Tagger
from . import options, startup

__all__ = ["add_parser", "run", "tagger_from"]


def add_parser(sub):
    p = sub.add_parser("tag", help="tag audio files with a shipped head or a run folder")
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="audio files, folders (recursive) or list files (.txt, .m3u)"
    )
    p.add_argument(
        "--model",
        default="music",
        help="shipped head (tagger models), a run or bundle folder, or hf://OWNER/REPO[@REVISION] (default music)",
    )
    p.add_argument(
        "--out",
        default="tags.csv",
        help="output file: .csv (default) or .jsonl; rerunning with the same settings continues it",
    )
    p.add_argument(
        "--format",
        choices=writer.BEAM_FORMATS,
        default=None,
        help="default: from --out's extension (parquet: with --runner beam)",
    )
    p.add_argument("--top-n", type=options.positive_int, default=5, help="top tags per clip in the CSV")
    p.add_argument(
        "--threshold",
        type=options.probability,
        default=None,
        help="one threshold for every tag (default: the model's per-tag thresholds)",
    )
    p.add_argument("--taggram", default=None, metavar="DIR", help="also write per-patch predictions as DIR/<clip>.npz")
    p.add_argument(
        "--cache", default=None, metavar="CACHE", help="reuse/fill an embedding cache (re-tagging skips the network)"
    )
    options.add_pca_option(p)
    p.add_argument("--errors", default=None, metavar="FILE", help="failures file (default OUT.errors.tsv)")
    p.add_argument(
        "--overwrite", action="store_true", help="start OUT afresh (a rerun with other settings is refused without it)"
    )
    options.add_allow_option(p)
    options.add_embedding_options(p)
    options.add_frontend_option(p)
    options.add_root_option(p)
    options.add_runner_options(p)
    p.set_defaults(func=run)


def tagger_from(args):
    """The :class:`tagger.tagging.api.Tagger` of ``--model`` with the command's embedding options."""
    return Tagger(
        args.model,
        weights=args.weights,
        pca_params=args.pca,
        cache_dir=args.cache,
        allow_other_embedding=args.allow_other_embedding,
        **options.network_options(args),
    )


def run(args):
    startup.backend(args)
    fmt = writer.format_for(args.out, args.format)
    filters = dict(include=args.include, exclude=args.exclude, root=args.root, errors_file=args.errors)
    if distributed.check_runner(args.runner, dry_run=args.dry_run):
        startup.quiet_beam_logging(args)
        head = Head(args.model)
        embedder = extractor.for_head(
            head.meta, weights=args.weights, pca_params=args.pca, **options.network_options(args)
        )
        summary = distributed.run_tag(
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
            pca_params=args.pca,
            dry_run=args.dry_run,
            allow_other_embedding=args.allow_other_embedding,
            **filters,
        )
        line = lambda s: f"tagged {s['tagged']}, failed {s['failed']} of {s['total']} files -> {s['shards']}"  # noqa: E731
        return options.beam_done(args, summary, line)
    if fmt not in writer.FORMATS:
        raise ParameterError("Parquet output comes from the Beam pipeline: add --runner beam (or write .csv / .jsonl)")
    summary = writer.tag_to_file(
        tagger_from(args),
        args.inputs,
        args.out,
        fmt=fmt,
        top_n=args.top_n,
        threshold=args.threshold,
        taggram_dir=args.taggram,
        workers=args.workers,
        progress=options.progress(args),
        overwrite=args.overwrite,
        **filters,
    )
    return options.files_done(
        summary,
        f"tagged {summary['tagged']}, skipped {summary['skipped']} (done before), failed {summary['failed']}"
        f" of {summary['total']} files -> {args.out}",
    )
