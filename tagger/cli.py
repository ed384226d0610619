"""The ``tagger`` command: parses arguments and calls the library. Nothing else.

Exit status: 0 success; 1 an error stopped the command (bad input, missing
weights, bad config); 2 bad command-line usage; 3 the command finished but
some files failed (listed in the errors file).
"""

import argparse
import logging
import os
import sys

from . import __version__, params
from .exceptions import TaggerError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SOME_FAILED = 0, 1, 2, 3


def _add_embedding_options(p):
    p.add_argument("--weights", default=None, help=f"VGGish SavedModel folder, vggish_model.ckpt or TF Hub handle (default ${params.WEIGHTS_ENV}, else {params.VGGISH_HUB_HANDLE})")
    p.add_argument("--hop", type=float, default=params.EXAMPLE_HOP_SECONDS, help="patch hop in seconds (0.96: no overlap; 0.48: 50%%)")
    p.add_argument("--short", choices=("pad", "skip"), default="pad", help="clips shorter than 0.96 s: zero-pad (warn) or skip (report)")
    p.add_argument("--batch-size", type=int, default=64, help="patches per network call")
    p.add_argument("--workers", type=int, default=None, help="decode processes (default: cores - 1; 0: decode in the main process)")
    p.add_argument("--include", action="append", default=[], metavar="GLOB", help="only files matching (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip files matching (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _embedder(args, **extra):
    from .embed import Embedder

    return Embedder(args.weights, batch_size=args.batch_size, hop_seconds=args.hop, short_policy=args.short, **extra)


def cmd_embed(args):
    from .embed import embed_files

    embedder = _embedder(args, postprocess=args.postprocess, pca_params=args.pca, dtype=args.dtype)
    summary = embed_files(
        args.inputs,
        args.out,
        embedder=embedder,
        overwrite=args.overwrite,
        workers=args.workers,
        include=args.include,
        exclude=args.exclude,
        errors_file=args.errors,
        progress=False if args.no_progress else None,
    )
    print(
        f"embedded {summary['embedded']}, skipped {summary['skipped']} (already cached),"
        f" failed {summary['failed']} of {summary['total']} files -> {args.out}"
    )
    if summary["failed"]:
        print(f"failures listed in {summary['errors_file']}", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


def build_parser():
    parser = argparse.ArgumentParser(prog="tagger", description="Music tagging with transfer learning from VGGish.")
    parser.add_argument("--version", action="version", version=f"tagger {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("embed", help="audio files -> cached VGGish embeddings (one pickle per track)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders (recursive) or list files")
    p.add_argument("--out", required=True, metavar="CACHE", help="cache folder")
    p.add_argument("--postprocess", action="store_true", help="PCA-whiten and quantise to uint8 (official parameters)")
    p.add_argument("--pca", default=None, help=f"vggish_pca_params.npz (default ${params.PCA_PARAMS_ENV})")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="network compute type")
    p.add_argument("--overwrite", action="store_true", help="re-embed tracks already in the cache")
    p.add_argument("--errors", default=None, metavar="FILE", help="failures file (default CACHE/errors.tsv)")
    _add_embedding_options(p)
    p.set_defaults(func=cmd_embed)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return args.func(args)
    except TaggerError as exc:
        print(f"tagger {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"tagger {args.command}: interrupted; finished work is kept, rerun to continue", file=sys.stderr)
        return 130
