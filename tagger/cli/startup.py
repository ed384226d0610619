"""What the command does around a command: a bad backend refused, TensorFlow's start-up lines hidden whenever it loads, Beam's quietened, SIGTERM as Ctrl-C."""

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import signal
import sys

from .. import backend as keras_backend
from ..console import filtered_stderr
from ..embedding import registry
from ..exceptions import TaggerError
from ..training import bundle

__all__ = ["backend", "weights_reader", "quiet_beam_logging", "Terminated", "sigterm_as_interrupt"]

# TensorFlow's native start-up lines (glog INFO/WARNING, the absl banner, CUDA probing on machines
# without a GPU): written to file descriptor 2 while it loads, whatever TF_CPP_MIN_LOG_LEVEL says
_STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} \S+ +\d+ \S+:\d+\] "
    r"|E\d{4} \S+ +\d+ \S+:\d+\] .*(cuInit|cuda|CUDA)"
    r"|To enable the following instructions: )"
)


def weights_model(args):
    """The embedding model a command's ``--weights`` is for: the kind of ``--embedding``, else the kind of
    ``--model``'s head (``bundle.json``), else the default model (VGGish)."""
    kind = getattr(args, "embedding", None)
    if kind is None and getattr(args, "model", None) and args.command in ("tag", "evaluate"):
        try:
            kind = bundle.read_meta(bundle.resolve(args.model)).get("embedding")
        except TaggerError:
            kind = None  # a bad --model is the command's own error, named where it loads
    return registry.kind(registry.stored_kind(kind)).model


def weights_reader(args):
    """The weights reader (:func:`tagger.embedding.registry.weights_reader`) of :func:`weights_model`, or None
    where that model has no weights (handcrafted features, log-mel patches)."""
    name = weights_model(args)
    return registry.weights_reader(name) if registry.model(name).weights_reader else None


def backend(args):
    """Called by each command before its work: a bad ``KERAS_BACKEND`` refused, and TensorFlow's start-up lines
    hidden (unless -v) whenever it loads.

    TensorFlow loads where it is the backend (``KERAS_BACKEND`` unset or ``tensorflow``) or where the command
    reads VGGish weights in one of TensorFlow's forms (a checkpoint, a SavedModel, a TF Hub handle), and only when
    the command first needs it: a rerun with nothing to do never loads it. On ``jax`` or ``torch`` with a plain
    ``.npz`` / ``.safetensors`` file it is never imported.
    """
    chosen = os.environ.get("KERAS_BACKEND", "tensorflow")
    keras_backend.check_choice()  # a bad KERAS_BACKEND is a clear error, before any work
    reader = weights_reader(args)  # the weights of the model the command runs: what --weights gives
    weights = None
    if reader is None:
        pass
    elif hasattr(args, "weights"):  # embed, tag, prepare, evaluate: --weights, else the environment, else TF Hub
        weights = reader.resolve_source(args.weights)
    elif args.command == "weights":  # `tagger weights export SOURCE OUT`
        weights = getattr(args, "source", None)
    tensorflow_weights = weights is not None and not weights.endswith(reader.PLAIN_FORMATS)
    if (chosen == "tensorflow" or tensorflow_weights) and not args.verbose and "tensorflow" not in sys.modules:
        if not any(isinstance(finder, _QuietTensorFlow) for finder in sys.meta_path):
            sys.meta_path.insert(0, _QuietTensorFlow())


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` where the path finder does, and has its module run with the start-up lines hidden
    (and the CUDA probe made then, not mid-command); leaves ``sys.meta_path`` when it has run. Finds nothing else.
    (A spec only looked at, as :func:`importlib.util.find_spec` does, is never run.)"""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module  # this find's own loader (a new one for each find)

        def exec_quietly(module):
            sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
            with filtered_stderr(_STARTUP_NOISE):
                run(module)
                module.config.list_physical_devices()
            logging.getLogger("tensorflow").setLevel(logging.ERROR)  # deprecation chatter of the checkpoint reader

        spec.loader.exec_module = exec_quietly
        return spec


def _quiet_beam(record):
    return record.levelno >= logging.ERROR or "apache_beam" not in record.pathname


def quiet_beam_logging(args):
    """Beam's own start-up warnings hidden, unless -v."""
    if not args.verbose:
        for handler in logging.getLogger().handlers:
            if _quiet_beam not in handler.filters:
                handler.addFilter(_quiet_beam)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so it unwinds as Ctrl-C does."""


def _terminated(signum, frame):
    # one SIGTERM is enough: a shutdown often sends a second (to the process group, and again from a parent that
    # forwards it), which must not interrupt the unwinding and the message of the first
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt(enabled=True):
    """A preempted spot VM's shutdown sends SIGTERM: handled as Ctrl-C (finished work kept, rerun continues)."""
    previous = signal.signal(signal.SIGTERM, _terminated) if enabled else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
