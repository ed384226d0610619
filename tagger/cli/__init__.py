"""The ``tagger`` command: one module per command, each parsing its arguments and calling the library.

=============  ==========================================================
module         commands
=============  ==========================================================
``embed``      ``tagger embed`` (locally, or through Beam)
``prepare``    ``tagger prepare audioset | gtzan | mtt | folder``
``features``   ``tagger features``
``train``      ``tagger tune``, ``tagger train``
``tag``        ``tagger tag`` (locally, or through Beam)
``evaluate``   ``tagger evaluate`` (a run, or any model on your truth)
``weights``    ``tagger weights export`` (a plain weights file, no TensorFlow)
``plot``       ``tagger plot taggram | run`` (PNG pictures)
``models``     ``tagger models`` (the shipped heads), ``tagger export`` (a run -> a Hub-ready bundle)
``options``    the options the commands share, and their summary lines
``startup``    the backend's start-up lines hidden, SIGTERM as Ctrl-C
``checks``     usage checks before the backend loads (paths, model, weights)
=============  ==========================================================

Exit status: 0 success; 1 an error stopped the command (bad input, missing
weights, bad config); 2 bad command-line usage; 3 the command finished but
some files failed (listed in the errors file).
"""

import argparse
import logging
import os
import sys
import threading

from ..exceptions import TaggerError
from ..version import __version__
from . import checks, embed, evaluate, features, models, plot, prepare, startup, tag, train, weights
from .options import EXIT_ERROR, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE

__all__ = ["main", "console", "build_parser", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_SOME_FAILED"]


def build_parser():
    """The parser of every command (also used by ``tagger.jobs`` to check a job's steps before it runs)."""
    parser = argparse.ArgumentParser(prog="tagger", description="Music tagging with transfer learning from VGGish.")
    parser.add_argument("--version", action="version", version=f"tagger {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more, TensorFlow's start-up lines included")
    sub = parser.add_subparsers(dest="command", required=True)
    embed.add_parser(sub)
    prepare.add_parser(sub)
    features.add_parser(sub)
    train.add_parsers(sub)
    tag.add_parser(sub)
    evaluate.add_parser(sub)
    weights.add_parser(sub)
    models.add_parsers(sub)
    plot.add_parser(sub)
    return parser


def main(argv=None):
    """Run one command; its exit status (130 on Ctrl-C, 143 on SIGTERM, finished work kept in both)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "runner", "local") == "local":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pipeline_args = extra  # Beam pipeline options, for --runner beam / DataflowRunner
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # the message is written inside the handler's scope: after a first SIGTERM a second one (a parent forwarding it)
    # is ignored until the message is out, never the default action that would end the process silently
    with startup.sigterm_as_interrupt(threading.current_thread() is threading.main_thread()):
        try:
            checks.before_backend(args)  # a bad path or model fails here, before TensorFlow loads
            return args.func(args)
        except TaggerError as exc:
            print(f"tagger {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt as exc:
            how = "terminated (SIGTERM)" if isinstance(exc, startup.Terminated) else "interrupted"
            print(f"tagger {args.command}: {how}; finished work is kept, rerun to continue", file=sys.stderr)
            return 143 if isinstance(exc, startup.Terminated) else 130


def console(argv=None):
    """The ``tagger`` executable (and ``python -m tagger``): :func:`main`, then a quick exit.

    Once the command has returned, everything it wrote is closed; what is left is the interpreter's
    teardown, which takes TensorFlow 1.3-1.5 s (2 cores). Where TensorFlow was loaded, standard output,
    standard error and the logs are flushed, multiprocessing's own exit step runs (workers joined,
    semaphores released) and the process ends at once with the command's status.
    """
    code = main(argv)
    if "tensorflow" not in sys.modules:
        return code
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
    except (OSError, ValueError):  # a closed pipe: nothing more can be said; the status still can
        pass
    if "multiprocessing" in sys.modules:
        # what multiprocessing does at a normal exit: join the decode workers and release the queues'
        # named semaphores, which the resource tracker would otherwise report as leaked
        import multiprocessing.util

        multiprocessing.util._exit_function()
    os._exit(code if isinstance(code, int) else EXIT_ERROR)
