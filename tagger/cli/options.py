"""What the commands share: their common options, and how a command reports what it did."""

import argparse
import sys

from ..embedding import extractor, params, registry
from ..exceptions import ParameterError

__all__ = [
    "EXIT_OK",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "EXIT_SOME_FAILED",
    "add_embedding_options",
    "add_embedding_choice",
    "add_embedding_alias",
    "embedding_kind",
    "add_runner_options",
    "add_root_option",
    "add_allow_option",
    "add_pca_option",
    "positive_int",
    "nonnegative_int",
    "probability",
    "hop_seconds",
    "progress",
    "extractor_from",
    "files_done",
    "beam_done",
    "left_out",
    "print_scores",
]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SOME_FAILED = 0, 1, 2, 3

#: the summary figures of an evaluation, in the order they are printed
SCORES = ("macro_roc_auc", "macro_pr_auc", "micro_f1", "accuracy", "macro_f1")


def add_embedding_options(p):
    """The settings of the extractor: weights, hop, short clips, batch size, precision, workers, file filters."""
    p.add_argument(
        "--weights",
        default=None,
        help="the network's weights. VGGish: a SavedModel folder, vggish_model.ckpt, a TF Hub handle, or a plain"
        " .npz/.safetensors file (`tagger weights export`; no TensorFlow needed) (default $TAGGER_VGGISH_WEIGHTS,"
        " else https://tfhub.dev/google/vggish/1). musicnn's networks: a checkpoint folder or a plain file"
        " (default: its folder in $TAGGER_MUSICNN_WEIGHTS, else in the installed musicnn package)",
    )
    p.add_argument(
        "--hop",
        type=hop_seconds,
        default=registry.model(registry.models()[0]).hop_seconds,
        help="patch hop in seconds, a multiple of 0.01 (0.96: no overlap; 0.48: 50%%)",
    )
    p.add_argument(
        "--short",
        choices=("pad", "skip"),
        default="pad",
        help="clips shorter than 0.96 s: zero-pad (warn) or skip (report)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="patches per network call (default 64 on a CPU, 512 on a GPU)",
    )
    p.add_argument(
        "--precision",
        "--dtype",
        dest="precision",
        choices=params.PRECISIONS,
        default=None,
        help=f"network compute precision (default ${params.PRECISION_ENV}, else auto: bfloat16 on a GPU that has it,"
        " else float16 on a GPU; on a CPU bfloat16 with AMX or AVX512_BF16, else float32). bfloat16 and float16"
        " runs check their first patches against float32 and fall back to it, with a warning, where they differ"
        f" by more than {params.GUARD_TOLERANCE:g}; the precision used is recorded in cache entries and outputs",
    )
    p.add_argument(
        "--workers",
        type=nonnegative_int,
        default=None,
        help="decode processes (default: cores - 1, every core when a GPU runs the network; 0: in the main process)",
    )
    add_file_filters(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def embedding_kind(text):
    """An argparse type: ``MODEL[:KIND]`` (a model of ``tagger models``, and one of its kinds; default its first)
    -> the kind's name."""
    name, _, kind = text.partition(":")
    if name not in registry.models():
        raise argparse.ArgumentTypeError(
            f"{text!r}: no embedding model {name!r}; the models are {', '.join(registry.models())} (`tagger models`)"
        )
    kinds = [k.name for k in registry.model(name).kinds]
    if not kind:
        return kinds[0]
    if text in kinds:  # a kind named with its model (musicnn-mtt:max_pool)
        return text
    if kind not in kinds:
        raise argparse.ArgumentTypeError(f"{text!r}: model {name} makes {', '.join(kinds)}, not {kind!r}")
    return kind


def add_embedding_alias(p, flag, kind, help):
    """An older flag that picks one kind: ``--embedding`` by another name (``--postprocess``, ``--features``)."""
    p.add_argument(flag, dest="embedding", action="store_const", const=kind, help=help)


def add_embedding_choice(p, *, what="cache"):
    """``--embedding MODEL[:KIND]``: which model, and which of its kinds, fills the cache (``dest='embedding'``;
    None: the default model's first kind, VGGish's raw embeddings)."""
    p.add_argument(
        "--embedding",
        type=embedding_kind,
        default=None,
        metavar="MODEL[:KIND]",
        help=f"what to {what}: a model of `tagger models` and one of its kinds (default vggish: raw VGGish"
        " embeddings; vggish:postprocessed, features, melspec, musicnn-mtt[:max_pool|:mean_pool|:penultimate],"
        " musicnn-msd, vgg-mtt, vgg-msd)",
    )


def add_file_filters(p):
    p.add_argument("--include", action="append", default=[], metavar="GLOB", help="only files matching (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip files matching (repeatable)")


def add_runner_options(p):
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


def add_root_option(p):
    p.add_argument(
        "--root",
        default=None,
        metavar="DIR",
        help="cache track ids are file paths relative to DIR (default: the working folder)",
    )


def add_allow_option(p):
    p.add_argument(
        "--allow-other-embedding",
        action="store_true",
        help="use a model with weights or PCA parameters other than those it was trained on (refused by default)",
    )


def add_pca_option(p):
    p.add_argument("--pca", default=None, help="vggish_pca_params.npz (default $TAGGER_VGGISH_PCA)")


def _int_at_least(minimum, doc):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be >= {minimum}")
        return value

    parse.__doc__ = doc
    return parse


positive_int = _int_at_least(1, "An argparse type: an integer >= 1.")
nonnegative_int = _int_at_least(0, "An argparse type: an integer >= 0.")


def probability(text):
    """An argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value:g} is not a probability (0 to 1)")
    return value


def hop_seconds(text):
    """An argparse type: a patch hop in seconds, as the default model's frontend checks it (VGGish's: a positive
    multiple of 0.01 s, :func:`tagger.embedding.vggish.params.hop_frames`)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    try:
        registry.model(registry.models()[0]).frontend(hop_seconds=value)
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(f"{value:g} is not a patch hop ({exc})") from None
    return value


def progress(args):
    """The progress setting of a command: hidden with --no-progress, else tqdm's own choice (shown on a terminal)."""
    return False if args.no_progress else None


def network_options(args):
    """The VGGish settings of the embedding options, as :class:`tagger.embedding.vggish.extractor.Embedder` keywords."""
    frontend_kind = getattr(args, "frontend_kind", None)  # --frontend, where a command has it
    if frontend_kind is None and getattr(args, "runner", "local") != "local":
        frontend_kind = "reference"  # the Beam pipeline's workers make the reference frontend's patches
    return dict(
        batch_size=args.batch_size,
        hop_seconds=args.hop,
        short_policy=args.short,
        dtype=args.precision,
        frontend_kind=frontend_kind,
    )


def add_frontend_option(p):
    """``--frontend reference|device``: where VGGish's log-mel is computed (``embed``, ``tag``)."""
    p.add_argument(
        "--frontend",
        dest="frontend_kind",
        choices=("reference", "device"),
        default=None,
        help="where VGGish's log-mel is computed: reference (NumPy in the decode workers) or device (keras.ops in"
        " float32 with the network, in its batch; within 1e-4 of the reference's embeddings). Default: reference"
        " where the network computes in float32, device where it computes in bfloat16 or float16 (--precision)."
        " The cache entries of each are their own: those of the other frontend are kept, not reused",
    )


def extractor_from(args, kind=None, **settings):
    """The extractor (:func:`tagger.embedding.extractor.make`) of a kind, with the command's embedding options."""
    return extractor.make(kind, weights=args.weights, **network_options(args), **settings)


def deferred_extractor_from(args, kind=None, **settings):
    """:func:`extractor_from`'s extractor, made on first need (:func:`tagger.embedding.extractor.deferred`)."""
    return extractor.deferred(kind, weights=args.weights, **network_options(args), **settings)


def files_done(summary, line):
    """Print a file command's summary line (and where its failures are listed); the exit status."""
    print(line)
    if summary["failed"]:
        print(f"failures listed in {summary['errors_file']}", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


def beam_done(args, summary, line):
    """Print a Beam run's dry-run description, or its summary line; the exit status."""
    if args.dry_run:
        print(summary["description"])
        return EXIT_OK
    print(f"{line(summary)} ({args.runner})")
    return EXIT_SOME_FAILED if summary["failed"] else EXIT_OK


def left_out(*groups):
    """Print, on standard error, each group of clips a command left out: its count and the first few."""
    for what, items in groups:
        if items:
            print(
                f"{len(items)} clips {what}: {', '.join(map(str, items[:5]))}{' ...' if len(items) > 5 else ''}",
                file=sys.stderr,
            )


def print_scores(summary, where):
    """Print an evaluation's summary figures and what they were measured on (``where``)."""
    keys = [k for k in SCORES if k in summary]
    print(", ".join(f"{k} {summary[k]:.4f}" for k in keys) + f" on {summary['n_clips']} clips {where}")
