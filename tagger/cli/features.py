"""``tagger features``: audio files -> the 57 handcrafted GTZAN features, one table row per file."""

from ..embedding.features import features_to_file
from . import options

__all__ = ["add_parser", "run"]


def add_parser(sub):
    p = sub.add_parser("features", help="audio files -> the 57 handcrafted GTZAN features, one table row per file")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders (recursive) or list files")
    p.add_argument(
        "--out", required=True, metavar="FILE", help="feature table: .csv (rows appended as files finish) or .parquet"
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: cores - 1; 0: in the main process)")
    options.add_file_filters(p)
    p.add_argument("--errors", default=None, metavar="FILE", help="failures file (default OUT.errors.tsv)")
    p.add_argument("--overwrite", action="store_true", help="start OUT afresh")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    options.add_root_option(p)
    p.set_defaults(func=run)


def run(args):
    summary = features_to_file(
        args.inputs,
        args.out,
        include=args.include,
        exclude=args.exclude,
        root=args.root,
        workers=args.workers,
        errors_file=args.errors,
        progress=options.progress(args),
        overwrite=args.overwrite,
    )
    return options.files_done(
        summary,
        f"extracted {summary['extracted']}, skipped {summary['skipped']} (done before), failed {summary['failed']}"
        f" of {summary['total']} files -> {args.out}",
    )
