"""What the command does around a command: TensorFlow's start-up lines hidden, Beam's quietened, SIGTERM as Ctrl-C."""

import contextlib
import logging
import os
import re
import signal
import sys
import tempfile

__all__ = ["tensorflow", "quiet_beam_logging", "Terminated", "sigterm_as_interrupt"]

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


def tensorflow(args):
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
