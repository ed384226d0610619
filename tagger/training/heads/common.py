"""What every head shares: the tasks, the inputs (standardised when asked), the dense stack, the output bias."""

import numpy as np

from ...embedding import registry
from ...exceptions import ParameterError

__all__ = [
    "TASKS",
    "inputs",
    "input_stats",
    "dense_stack",
    "dropout_layer",
    "prior_bias",
    "final_activation",
    "output_bias_initializer",
]

TASKS = ("multilabel", "singlelabel")


def dropout_layer(rate, name):
    """A Dropout layer whose masks come from its own seed generator on every backend.

    Training sets that generator's state at each epoch start (from the run's seed and the epoch), so a resumed
    run draws the masks the uninterrupted one drew. The seed given here only makes Keras take that path on
    PyTorch too, whose unseeded dropout would draw from torch's global generator instead.
    """
    from keras import layers

    return layers.Dropout(rate, seed=1, name=name)


def inputs(embedding_size, standardize=False, input_stats=None):
    """Model inputs and the tensor heads build on: ``x``, standardised per dimension when asked.

    ``embedding_size`` None: one row of the default kind (VGGish's 128); training passes its cache's own.
    """
    import keras
    from keras import layers

    if embedding_size is None:
        embedding_size = registry.kind(registry.default_kind()).row_shape[0]
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


def dense_stack(h, *, hidden, n_layers, dropout, prefix, levels=False):
    """[Dense, BatchNorm, ReLU, Dropout] x n_layers (Dense acts per patch on 3-D input).

    ``levels``: return every block's output (a list, the input first), not only the last.
    """
    from keras import layers

    outputs = [h]
    for i in range(n_layers):
        h = layers.Dense(hidden, name=f"{prefix}_dense{i}")(h)
        h = layers.BatchNormalization(name=f"{prefix}_bn{i}")(h)
        h = layers.Activation("relu", name=f"{prefix}_relu{i}")(h)
        if dropout:
            h = dropout_layer(dropout, name=f"{prefix}_dropout{i}")(h)
        outputs.append(h)
    return outputs if levels else h


def final_activation(task):
    return "sigmoid" if task == "multilabel" else "softmax"


def output_bias_initializer(output_bias):
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
