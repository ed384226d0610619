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
them are the one loader of saved heads (:func:`load_head`), the loss of each
task (:func:`loss_for`) and whole-track predictions (:func:`predict_tracks`).
"""

import numpy as np

from ..exceptions import ParameterError

# Keras (and so TensorFlow) is imported inside the builders: validating a config against this registry
# (tagger.training.config, `tagger-cloud submit`) must not load it.

__all__ = [
    "HEADS",
    "PATCH_HEADS",
    "TASKS",
    "load_head",
    "build_head",
    "check_members",
    "prior_bias",
    "input_stats",
    "loss_for",
    "predict_tracks",
]

TASKS = ("multilabel", "singlelabel")


def _inputs(embedding_size, standardize=False, input_stats=None):
    """Model inputs and the tensor heads build on: ``x``, standardised per dimension when asked."""
    import keras
    from keras import layers

    x = keras.Input((None, embedding_size), name="x")
    mask = keras.Input((None,), name="mask")
    if not standardize:
        return x, mask, x
    mean, variance = input_stats if input_stats is not None else ([0.0] * embedding_size, [1.0] * embedding_size)
    if len(mean) != embedding_size or len(variance) != embedding_size:
        raise ParameterError(
            f"input_stats has {len(mean)} means and {len(variance)} variances; embedding_size={embedding_size}"
        )
    h = layers.Normalization(
        axis=-1, mean=[float(v) for v in mean], variance=[float(v) for v in variance], name="standardize"
    )(x)
    return x, mask, h


def input_stats(embeddings):
    """Per-dimension mean and variance over every patch of the training tracks.

    Parameters
    ----------
    embeddings : list of np.ndarray, each (T_i, embedding_size)

    Returns
    -------
    mean, variance : list of float, each of length embedding_size
    """
    n, total, squares = 0, 0.0, 0.0  # running sums: no copy of the whole training set
    for e in embeddings:
        e = np.asarray(e, dtype=np.float64)
        n, total, squares = n + len(e), total + e.sum(0), squares + np.square(e).sum(0)
    mean = total / n
    return mean.tolist(), np.maximum(squares / n - mean**2, 1e-6).tolist()


def _stack(h, *, hidden, n_layers, dropout, prefix):
    """[Dense, BatchNorm, ReLU, Dropout] x n_layers (Dense acts per patch on 3-D input)."""
    from keras import layers

    for i in range(n_layers):
        h = layers.Dense(hidden, name=f"{prefix}_dense{i}")(h)
        h = layers.BatchNormalization(name=f"{prefix}_bn{i}")(h)
        h = layers.Activation("relu", name=f"{prefix}_relu{i}")(h)
        if dropout:
            h = layers.Dropout(dropout, name=f"{prefix}_dropout{i}")(h)
    return h


def _final(task):
    return "sigmoid" if task == "multilabel" else "softmax"


def _bias(output_bias):
    """Initial output bias (e.g. label-prior log-odds), or zeros."""
    import keras

    if output_bias is None:
        return "zeros"
    return keras.initializers.Constant([float(b) for b in output_bias])


def prior_bias(labels, task, *, eps=1e-3):
    """Output bias that starts a head at the label priors: log-odds (multi-label) or log-prior (single-label).

    Parameters
    ----------
    labels : np.ndarray, shape (n_tracks, n_outputs)

    Returns
    -------
    list of float
    """
    prior = np.clip(np.asarray(labels, dtype=np.float64).mean(0), eps, 1 - eps)
    return (np.log(prior / (1 - prior)) if task == "multilabel" else np.log(prior)).tolist()


def dense_head(
    n_outputs,
    task,
    *,
    hidden=256,
    n_layers=2,
    dropout=0.3,
    standardize=False,
    embedding_size=128,
    output_bias=None,
    input_stats=None,
):
    """Mean over the clip's patches, then a dense stack."""
    import keras
    from keras import layers

    from .layers import MaskedMean

    x, mask, h = _inputs(embedding_size, standardize, input_stats)
    h = MaskedMean(name="mean")(h, mask=mask)
    h = _stack(h, hidden=hidden, n_layers=n_layers, dropout=dropout, prefix="clip")
    out = layers.Dense(n_outputs, activation=_final(task), bias_initializer=_bias(output_bias), name="output")(h)
    return keras.Model([x, mask], out, name="dense")


def autopool_head(
    n_outputs,
    task,
    *,
    hidden=256,
    n_layers=2,
    dropout=0.3,
    alpha_init=0.0,
    standardize=False,
    embedding_size=128,
    output_bias=None,
    input_stats=None,
):
    """Per-patch dense stack and predictions, pooled over time by AutoPool.

    Multi-label: per-patch sigmoid probabilities are pooled. Single-label:
    per-patch logits are pooled, then softmax.
    """
    import keras
    from keras import layers

    from .layers import AutoPool1D

    x, mask, h = _inputs(embedding_size, standardize, input_stats)
    h = _stack(h, hidden=hidden, n_layers=n_layers, dropout=dropout, prefix="patch")
    if task == "multilabel":
        per_patch = layers.Dense(
            n_outputs, activation="sigmoid", bias_initializer=_bias(output_bias), name="patch_output"
        )(h)
        out = AutoPool1D(alpha_init=alpha_init, name="output")(per_patch, mask=mask)
    else:
        per_patch = layers.Dense(n_outputs, bias_initializer=_bias(output_bias), name="patch_logits")(h)
        pooled = AutoPool1D(alpha_init=alpha_init, name="autopool")(per_patch, mask=mask)
        out = layers.Activation("softmax", name="output")(pooled)
    return keras.Model([x, mask], out, name="autopool")


def attention_head(
    n_outputs,
    task,
    *,
    hidden=256,
    n_layers=2,
    dropout=0.3,
    standardize=False,
    embedding_size=128,
    output_bias=None,
    input_stats=None,
):
    """Per-patch dense stack, per-patch predictions weighted by attention over time."""
    import keras
    from keras import layers

    from .layers import AttentionPool1D

    x, mask, h = _inputs(embedding_size, standardize, input_stats)
    h = _stack(h, hidden=hidden, n_layers=n_layers, dropout=dropout, prefix="patch")
    attention = layers.Dense(n_outputs, name="attention_logits")(h)
    if task == "multilabel":
        per_patch = layers.Dense(
            n_outputs, activation="sigmoid", bias_initializer=_bias(output_bias), name="patch_output"
        )(h)
        out = AttentionPool1D(name="output")([per_patch, attention], mask=mask)
    else:
        per_patch = layers.Dense(n_outputs, bias_initializer=_bias(output_bias), name="patch_logits")(h)
        pooled = AttentionPool1D(name="attention")([per_patch, attention], mask=mask)
        out = layers.Activation("softmax", name="output")(pooled)
    return keras.Model([x, mask], out, name="attention")


def mlp_head(
    n_outputs,
    task,
    *,
    hidden=64,
    n_layers=2,
    dropout=0.3,
    standardize=True,
    embedding_size=57,
    output_bias=None,
    input_stats=None,
):
    """The course projects' multi-layer perceptron on a feature vector (one "patch" per clip).

    The dense head's stack with the defaults of the GTZAN feature grid: 1-2
    hidden layers of 32-128 ReLU units, each [Dense, BatchNorm, ReLU, Dropout],
    on standardised inputs (the scaler is a layer of the saved model). On
    clips of several patches it averages them first, as ``dense`` does.
    """
    model = dense_head(
        n_outputs,
        task,
        hidden=hidden,
        n_layers=n_layers,
        dropout=dropout,
        standardize=standardize,
        embedding_size=embedding_size,
        output_bias=output_bias,
        input_stats=input_stats,
    )
    model.name = "mlp"
    return model


def _patch_inputs(patch_shape):
    """Inputs of a head on log-mel patches: x (batch, time, frames, bands), mask; and the spectrogram image."""
    import keras

    from .layers import PatchFrames

    x = keras.Input((None, *patch_shape), name="x")
    mask = keras.Input((None,), name="mask")
    image, frame_mask = PatchFrames(name="frames")([x, mask])
    return x, mask, image, frame_mask


def _conv_blocks(h, filters, *, kernel=3, prefix="conv"):
    """[Conv2D, BatchNorm, ReLU, MaxPool 2 x 2] per entry of ``filters``; the time axis shrinks by 2 per block."""
    from keras import layers

    for i, f in enumerate(filters):
        h = layers.Conv2D(f, kernel, padding="same", name=f"{prefix}{i}")(h)
        h = layers.BatchNormalization(name=f"{prefix}{i}_bn")(h)
        h = layers.Activation("relu", name=f"{prefix}{i}_relu")(h)
        h = layers.MaxPooling2D(2, name=f"{prefix}{i}_pool")(h)
    return h


def _as_sequence(h, frame_mask, n_pools, name):
    """(batch, steps, bands', channels) -> (batch, steps, bands' * channels) and the matching boolean mask."""
    from keras import layers

    from .layers import SequenceMask

    seq = layers.Reshape((-1, h.shape[2] * h.shape[3]), name=f"{name}_sequence")(h)
    return seq, SequenceMask(2**n_pools, name=f"{name}_mask")(frame_mask)


def _cnn_output(h, n_outputs, task, *, hidden, dropout, output_bias):
    from keras import layers

    h = layers.Dense(hidden, activation="relu", name="dense")(h)
    if dropout:
        h = layers.Dropout(dropout, name="dropout")(h)
    return layers.Dense(n_outputs, activation=_final(task), bias_initializer=_bias(output_bias), name="output")(h)


def _check_filters(filters, patch_shape, n_blocks=None):
    if not filters or not all(isinstance(f, int) and f > 0 for f in filters):
        raise ParameterError(f"filters={filters!r} must be a non-empty list of positive integers")
    if patch_shape[0] % 2 ** len(filters) or patch_shape[1] < 2 ** len(filters):
        raise ParameterError(f"{len(filters)} pooling blocks do not fit patches of {patch_shape[0]} x {patch_shape[1]}")


def _cnn_sequence(patch_shape, filters, kernels=(3,)):
    """Inputs, then conv blocks over the window's spectrogram (one branch per kernel size, merged), as a sequence.

    Returns ``x``, ``mask`` (the model's inputs), ``seq`` (batch, steps, features) and its boolean mask.
    """
    from keras import layers

    filters = list(filters)
    _check_filters(filters, patch_shape)
    x, mask, image, frame_mask = _patch_inputs(patch_shape)
    if len(kernels) == 1:
        h = _conv_blocks(image, filters, kernel=kernels[0])
    else:
        branches = [_conv_blocks(image, filters, kernel=k, prefix=f"branch{b}_conv") for b, k in enumerate(kernels)]
        h = layers.Concatenate(axis=-1, name="merge")(branches)
    seq, seq_mask = _as_sequence(h, frame_mask, len(filters), "cnn")
    return x, mask, seq, seq_mask


def cnn4_head(
    n_outputs, task, *, filters=(16, 32, 64, 128), hidden=128, dropout=0.3, patch_shape=(96, 64), output_bias=None
):
    """From-scratch CNN on the log-mel spectrogram of the window: 4 blocks of [conv, BN, ReLU, pool],
    global (masked) average pooling, a dense layer (the GTZAN course project's best, 83.39 % on 8 genres)."""
    import keras

    from .layers import MaskedMean

    x, mask, seq, seq_mask = _cnn_sequence(patch_shape, filters)
    pooled = MaskedMean(name="pool")(seq, mask=seq_mask)
    out = _cnn_output(pooled, n_outputs, task, hidden=hidden, dropout=dropout, output_bias=output_bias)
    return keras.Model([x, mask], out, name="cnn4")


def cnn_gru_head(
    n_outputs,
    task,
    *,
    filters=(16, 32, 64, 128),
    units=64,
    hidden=128,
    dropout=0.3,
    patch_shape=(96, 64),
    output_bias=None,
):
    """The cnn4 trunk, then a GRU over time (masked), then a dense layer."""
    import keras
    from keras import layers

    x, mask, seq, seq_mask = _cnn_sequence(patch_shape, filters)
    h = layers.GRU(units, name="gru")(seq, mask=seq_mask)
    out = _cnn_output(h, n_outputs, task, hidden=hidden, dropout=dropout, output_bias=output_bias)
    return keras.Model([x, mask], out, name="cnn_gru")


def parallel_cnn_head(
    n_outputs,
    task,
    *,
    filters=(16, 32, 64, 128),
    kernels=(3, 5),
    hidden=128,
    dropout=0.3,
    patch_shape=(96, 64),
    output_bias=None,
):
    """Two parallel conv branches with different kernel sizes over the same spectrogram, merged (the 8-genre project)."""
    import keras

    from .layers import MaskedMean

    if len(kernels) != 2 or not all(isinstance(k, int) and k > 0 for k in kernels):
        raise ParameterError(f"kernels={kernels!r} must be two positive integers (one per branch)")
    x, mask, seq, seq_mask = _cnn_sequence(patch_shape, filters, kernels)
    pooled = MaskedMean(name="pool")(seq, mask=seq_mask)
    out = _cnn_output(pooled, n_outputs, task, hidden=hidden, dropout=dropout, output_bias=output_bias)
    return keras.Model([x, mask], out, name="parallel_cnn")


def cnn_lstm_head(
    n_outputs, task, *, filters=(32, 64), hidden=200, dropout=0.3, patch_shape=(96, 64), output_bias=None
):
    """Two [conv, BN, ReLU, pool] blocks, then LSTM 128 -> LSTM 32 -> dense 200 (the course project's CNN-LSTM)."""
    import keras
    from keras import layers

    x, mask, seq, seq_mask = _cnn_sequence(patch_shape, filters)
    h = layers.LSTM(128, return_sequences=True, name="lstm128")(seq, mask=seq_mask)
    h = layers.LSTM(32, name="lstm32")(h, mask=seq_mask)
    out = _cnn_output(h, n_outputs, task, hidden=hidden, dropout=dropout, output_bias=output_bias)
    return keras.Model([x, mask], out, name="cnn_lstm")


HEADS = {
    "dense": dense_head,
    "autopool": autopool_head,
    "attention": attention_head,
    "mlp": mlp_head,
    "cnn4": cnn4_head,
    "cnn_gru": cnn_gru_head,
    "parallel_cnn": parallel_cnn_head,
    "cnn_lstm": cnn_lstm_head,
}
#: heads that take log-mel patches (``frontend: melspec`` caches) rather than embedding rows
PATCH_HEADS = ("cnn4", "cnn_gru", "parallel_cnn", "cnn_lstm")


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

    from .layers import Ensemble

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


def load_head(path, *, compile=True):
    """Load a saved head: the one loader behind training resume, evaluation, export and tagging.

    Registers tagger's custom layers (and the fine-tuning trunk's) first, so
    a fresh process loads any run folder, bundle or checkpoint without
    importing anything else.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.keras`` file, or a folder holding ``model.keras`` (run folder or bundle).
    compile : bool
        Restore the optimizer too (resuming); False for inference and export.

    Returns
    -------
    keras.Model

    Raises
    ------
    DataError
        No such file, or not a loadable model (the reason is in the message).
    """
    import os

    import keras

    from ..exceptions import DataError
    from . import layers  # noqa: F401 - registers the custom layers (and, through it, the fine-tuning ones)

    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.exists(path):
        raise DataError(f"{path}: no saved head")
    try:
        return keras.saving.load_model(path, compile=compile)
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise DataError(f"{path}: cannot load the head ({exc})") from exc


def predict_tracks(model, embeddings, *, batch_size=256):
    """Clip-level predictions of a head for whole tracks (deterministic order).

    Returns
    -------
    np.ndarray, shape (n_tracks, n_outputs), float32
    """
    from .streams import iter_padded_batches

    outs = [np.asarray(model((x, m), training=False)) for x, m in iter_padded_batches(embeddings, batch_size)]
    return np.concatenate(outs)
