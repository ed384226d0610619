"""Heads over log-mel patches (``frontend: melspec`` caches), trained from scratch: cnn4, cnn_gru, parallel_cnn, cnn_lstm.

Each takes ``x`` (batch, time, frames, bands) float32 (96 x 64 VGGish patches, or the course's 128 x 128) and
``mask`` (batch, time); the patches of a window are joined into one spectrogram image before the convolutions.
"""

from ...exceptions import ParameterError
from .common import dropout_layer, final_activation, output_bias_initializer

__all__ = ["HEADS", "cnn4_head", "cnn_gru_head", "parallel_cnn_head", "cnn_lstm_head"]


def _patch_inputs(patch_shape):
    """Inputs of a head on log-mel patches: x (batch, time, frames, bands), mask; and the spectrogram image."""
    import keras

    from ..layers import PatchFrames

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

    from ..layers import SequenceMask

    seq = layers.Reshape((-1, h.shape[2] * h.shape[3]), name=f"{name}_sequence")(h)
    return seq, SequenceMask(2**n_pools, name=f"{name}_mask")(frame_mask)


def _cnn_output(h, n_outputs, task, *, hidden, dropout, output_bias):
    from keras import layers

    h = layers.Dense(hidden, activation="relu", name="dense")(h)
    if dropout:
        h = dropout_layer(dropout, name="dropout")(h)
    return layers.Dense(
        n_outputs,
        activation=final_activation(task),
        bias_initializer=output_bias_initializer(output_bias),
        name="output",
    )(h)


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

    from ..layers import MaskedMean

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

    from ..layers import MaskedMean

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


HEADS = {"cnn4": cnn4_head, "cnn_gru": cnn_gru_head, "parallel_cnn": parallel_cnn_head, "cnn_lstm": cnn_lstm_head}
