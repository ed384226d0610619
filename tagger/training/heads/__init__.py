"""Heads over VGGish embeddings, built by name from one registry.

Every head takes ``x`` (batch, time, embedding_size) float32 (128 for VGGish
embeddings; 57 for a handcrafted feature row, time 1) and ``mask`` (batch, time)
float32 (1 for real patches, 0 for padding) and returns clip-level
probabilities (batch, n_outputs): sigmoid for ``multilabel``, softmax for
``singlelabel``. With ``standardize=True`` a Normalization layer holding the
training patches' mean and variance (``input_stats``, see :func:`input_stats`;
the identity when not given) comes first, as the baseline's StandardScaler does.
``build_head(..., members=M)`` makes an ensemble of M independent copies of a
head (:class:`tagger.training.layers.Ensemble`). Heads know nothing of training; beside
them are the loss of each task (:func:`loss_for`) and whole-track predictions
(:func:`predict_tracks`); saved heads load with :func:`tagger.training.bundle.load_head`.

Modules: :mod:`.common` (inputs, dense stack, output bias), :mod:`.pooled` (heads
over embedding rows), :mod:`.cnn` (heads over log-mel patches).
"""

from typing import Any, Callable

import numpy as np

from ...exceptions import ParameterError
from . import cnn, pooled
from .common import TASKS, input_stats, prior_bias

# Keras (and so TensorFlow) is imported inside the builders: validating a config against this registry
# (tagger.training.config, `tagger-cloud submit`) must not load it.

__all__ = [
    "HEADS",
    "PATCH_HEADS",
    "BUILT_BY_TRAINING",
    "TASKS",
    "build_head",
    "check_members",
    "prior_bias",
    "input_stats",
    "loss_for",
    "predict_tracks",
]

#: every head, by name: the heads over embedding rows, then those over log-mel patches
HEADS: dict[str, Callable[..., Any]] = {**pooled.HEADS, **cnn.HEADS}
#: heads that take log-mel patches (``frontend: melspec`` caches) rather than embedding rows
PATCH_HEADS = tuple(cnn.HEADS)
#: builder arguments training sets (from the data), never a config
BUILT_BY_TRAINING = ("n_outputs", "task", "output_bias", "input_stats")


def check_members(members, *, key="members"):
    """Raise ParameterError unless ``members`` (ensemble size) is a positive integer; ``key`` names it."""
    if not isinstance(members, int) or isinstance(members, bool) or members < 1:
        raise ParameterError(f"{key}={members!r} must be a positive integer")


def build_head(name, n_outputs, task, *, members=1, **config):
    """Build a head by registry name, or an ensemble of ``members`` such heads.

    Parameters
    ----------
    name : str
        One of :data:`HEADS`.
    n_outputs : int
        Number of tags or classes.
    task : {'multilabel', 'singlelabel'}
    members : int
        Independent copies of the head, averaged at inference; in training
        each trains on its own slice of every batch (:class:`tagger.training.layers.Ensemble`),
        so a batch of ``members * b`` costs what one head's batch of that size does.
    **config
        The builder's keyword settings (``hidden``, ``n_layers``, ``dropout``, ...).

    Returns
    -------
    keras.Model
        Inputs ``[x (batch, time, 128), mask (batch, time)]``, output (batch, n_outputs).
    """
    if name not in HEADS:
        raise ParameterError(f"unknown head {name!r}; valid heads: {', '.join(sorted(HEADS))}")
    if task not in TASKS:
        raise ParameterError(f"task={task!r} must be one of {TASKS}")
    if n_outputs < 1:
        raise ParameterError(f"n_outputs={n_outputs} must be >= 1")
    check_members(members)
    try:
        heads = [HEADS[name](n_outputs, task, **config) for _ in range(members)]
    except TypeError as exc:
        raise ParameterError(f"head {name!r}: bad settings {sorted(config)} ({exc})") from exc
    if members == 1:
        return heads[0]
    import keras

    from ..layers import Ensemble

    x, mask = keras.Input(heads[0].inputs[0].shape[1:], name="x"), keras.Input((None,), name="mask")
    for i, head in enumerate(heads):
        head.name = f"{name}_{i}"
    out = Ensemble(heads, name="ensemble")([x, mask])
    return keras.Model([x, mask], out, name=f"{name}_x{members}")


def loss_for(task):
    """The training loss of a task: binary cross-entropy per tag, or categorical cross-entropy over the classes."""
    if task not in TASKS:
        raise ParameterError(f"task={task!r} must be one of {TASKS}")
    return "binary_crossentropy" if task == "multilabel" else "categorical_crossentropy"


def predict_tracks(model, embeddings, *, batch_size=256):
    """Clip-level predictions of a head for whole tracks (deterministic order).

    Returns
    -------
    np.ndarray, shape (n_tracks, n_outputs), float32
    """
    import keras

    from ..streams import iter_padded_batches

    # convert_to_numpy: a backend's tensor (PyTorch's carries autograd state) as a NumPy array
    batches = iter_padded_batches(embeddings, batch_size)
    outs = [np.asarray(keras.ops.convert_to_numpy(model((x, m), training=False)), np.float32) for x, m in batches]
    return np.concatenate(outs)
