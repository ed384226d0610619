"""Usage checks that run before the backend loads: a mistyped path or model costs no TensorFlow start-up.

Argument values (``--threshold``, ``--top-n``, ``--hop``) are checked by their
argparse types (:mod:`.options`); what needs the file system is checked here,
by :func:`before_backend`, which :func:`tagger.cli.main` calls before the command.
Each check is the library's own rule (:func:`tagger.embedding.vggish.network.check_source`,
:func:`tagger.training.bundle.resolve`), called early, not a second copy of it.
"""

import os

from .. import backend as keras_backend
from .. import locks
from ..embedding import files, provenance
from ..embedding.embed import default_dtype
from ..exceptions import DataError, ParameterError
from ..resumable import check_resume
from ..tagging import writer
from ..tagging.api import describe
from ..training import bundle
from ..training.evaluate import check_run, is_cv_run
from . import startup

__all__ = ["before_backend"]

#: the commands whose positional inputs are audio files, folders or list files
AUDIO_COMMANDS = ("embed", "tag", "features")
#: the commands that write a resumable output file (--out), one run at a time
OUTPUT_COMMANDS = ("tag", "features")


def _exists(paths, what):
    for path in paths:
        if not os.path.lexists(path):
            raise DataError(f"{path}: no such {what}")


def before_backend(args):
    """Check a command's paths, model and weights source; raise :class:`~tagger.exceptions.DataError` on the first bad one."""
    command = args.command
    keras_backend.check_choice()
    if command in AUDIO_COMMANDS and getattr(args, "runner", "local") == "local":
        # Beam runners read their inputs where they run (gs://..., globs): only local runs are checked here
        files.check_inputs(args.inputs)
    if command == "evaluate":
        if args.truth:
            _exists([args.truth], "truth file")
            _exists([args.predictions] if args.predictions else [], "predictions file")
            files.check_inputs(args.target)
        elif len(args.target) == 1 and not is_cv_run(args.target[0]):
            check_run(args.target[0])
    model = getattr(args, "model", None)
    if command in ("tag", "evaluate") and model:
        bundle.resolve(model)
    if getattr(args, "pca", None) and "://" not in args.pca:  # a remote file is the Beam workers' to read
        _exists([args.pca], "PCA parameter file")
    if command in ("embed", "tag", "evaluate") and hasattr(args, "weights"):
        if command != "evaluate" or args.model:
            reader = startup.weights_reader(args)
            if reader is not None and (args.weights or os.environ.get(reader.WEIGHTS_ENV)):
                reader.check_source(args.weights)
    if getattr(args, "frontend_kind", None) == "device" and getattr(args, "runner", "local") != "local":
        raise ParameterError(
            "--frontend device runs with the network in this process; the Beam pipeline's workers make the reference"
            " frontend's patches: leave out --frontend device, or run without --runner"
        )
    if hasattr(args, "precision") and args.precision is None:
        default_dtype()  # TAGGER_PRECISION, when set, names a precision
    if command == "weights" and getattr(args, "out", None):
        startup.weights_reader(args).check_plain_target(args.out)
    if command in OUTPUT_COMMANDS and getattr(args, "runner", "local") == "local" and not args.overwrite:
        _output_free(args.out)
        if command == "tag":
            _same_options(args)


def _output_free(out):
    """Refuse an output another run holds (the run takes the lock itself later; this only says so before the work)."""
    if os.path.isdir(os.path.dirname(os.path.abspath(out))):
        with locks.exclusive(locks.output_lock_path(out), what=f"output {out}"):
            pass


def _same_options(args):
    """Refuse, before any network loads, a rerun into an output made with another model or other options
    (the embedding's own settings are compared when the run begins)."""
    fmt = writer.format_for(args.out, args.format)
    meta_path = args.out + ".meta.json"
    if fmt not in writer.FORMATS or not os.path.exists(meta_path):
        return
    head = describe(args.model)
    new = writer.option_settings(
        head, fmt=fmt, top_n=min(args.top_n, len(head.labels)), threshold=args.threshold, taggram=args.taggram
    )
    check_resume(
        args.out,
        args.errors or args.out + ".errors.tsv",
        meta_path,
        new,
        compare=lambda old, now: provenance.settings_differences({k: old.get(k) for k in now}, now),
    )
