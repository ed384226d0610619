"""``tagger embed``: audio files -> cached embeddings of a model (VGGish by default; one pickle per track)."""

from .. import distributed
from ..embedding import registry
from ..embedding.embed import embed_files
from . import options, startup

__all__ = ["add_parser", "run"]


def add_parser(sub):
    p = sub.add_parser("embed", help="audio files -> cached embeddings (VGGish by default; one pickle per track)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders (recursive) or list files")
    p.add_argument("--out", required=True, metavar="CACHE", help="cache folder")
    options.add_embedding_choice(p)
    options.add_embedding_alias(
        p,
        "--postprocess",
        "postprocessed",
        "PCA-whiten and quantise to uint8 (official parameters): --embedding vggish:postprocessed",
    )
    options.add_pca_option(p)
    p.add_argument("--overwrite", action="store_true", help="re-embed tracks already in the cache")
    p.add_argument("--errors", default=None, metavar="FILE", help="failures file (default CACHE/errors.tsv)")
    options.add_embedding_options(p)
    options.add_frontend_option(p)
    options.add_root_option(p)
    options.add_runner_options(p)
    p.set_defaults(func=run)


def _line(summary, out):
    return (
        f"embedded {summary['embedded']}, skipped {summary['skipped']} (already cached),"
        f" failed {summary['failed']} of {summary['total']} files -> {out}"
    )


def run(args):
    startup.backend(args)
    beam = distributed.check_runner(args.runner, dry_run=args.dry_run)
    kind = registry.stored_kind(args.embedding)
    embedder = options.deferred_extractor_from(args, kind, pca_params=args.pca)  # made where a track needs it
    filters = dict(include=args.include, exclude=args.exclude, root=args.root, errors_file=args.errors)
    if beam:
        startup.quiet_beam_logging(args)
        summary = distributed.run_embed(
            args.inputs,
            args.out,
            embedder=embedder.get(),
            runner=args.runner,
            pipeline_args=args.pipeline_args,
            postprocess=registry.kind(kind).pca,
            pca_params=args.pca,
            dry_run=args.dry_run,
            **filters,
        )
        return options.beam_done(args, summary, lambda s: _line(s, args.out))
    summary = embed_files(
        args.inputs,
        args.out,
        extractor=embedder,
        overwrite=args.overwrite,
        workers=args.workers,
        progress=options.progress(args),
        **filters,
    )
    return options.files_done(summary, _line(summary, args.out))
