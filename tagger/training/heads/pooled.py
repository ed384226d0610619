"""Heads over embedding rows (VGGish embeddings, or a handcrafted feature row): dense, autopool, attention, mlp.

Each takes ``x`` (batch, time, embedding_size) float32 and ``mask`` (batch, time) and returns clip-level
probabilities (batch, n_outputs).
"""

from .common import dense_stack, final_activation, inputs, output_bias_initializer

__all__ = ["HEADS", "dense_head", "autopool_head", "attention_head", "mlp_head"]


def dense_head(
    n_outputs,
    task,
    *,
    hidden=256,
    n_layers=2,
    dropout=0.3,
    standardize=False,
    embedding_size=None,
    output_bias=None,
    input_stats=None,
):
    """Mean over the clip's patches, then a dense stack."""
    import keras
    from keras import layers

    from ..layers import MaskedMean

    x, mask, h = inputs(embedding_size, standardize, input_stats)
    h = MaskedMean(name="mean")(h, mask=mask)
    h = dense_stack(h, hidden=hidden, n_layers=n_layers, dropout=dropout, prefix="clip")
    out = layers.Dense(
        n_outputs,
        activation=final_activation(task),
        bias_initializer=output_bias_initializer(output_bias),
        name="output",
    )(h)
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
    embedding_size=None,
    output_bias=None,
    input_stats=None,
):
    """Per-patch dense stack and predictions, pooled over time by AutoPool.

    Multi-label: per-patch sigmoid probabilities are pooled. Single-label:
    per-patch logits are pooled, then softmax.
    """
    import keras
    from keras import layers

    from ..layers import AutoPool1D

    x, mask, h = inputs(embedding_size, standardize, input_stats)
    h = dense_stack(h, hidden=hidden, n_layers=n_layers, dropout=dropout, prefix="patch")
    if task == "multilabel":
        per_patch = layers.Dense(
            n_outputs, activation="sigmoid", bias_initializer=output_bias_initializer(output_bias), name="patch_output"
        )(h)
        out = AutoPool1D(alpha_init=alpha_init, name="output")(per_patch, mask=mask)
    else:
        per_patch = layers.Dense(n_outputs, bias_initializer=output_bias_initializer(output_bias), name="patch_logits")(
            h
        )
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
    embedding_size=None,
    output_bias=None,
    input_stats=None,
):
    """Per-patch dense stack, per-patch predictions weighted by attention over time."""
    import keras
    from keras import layers

    from ..layers import AttentionPool1D

    x, mask, h = inputs(embedding_size, standardize, input_stats)
    h = dense_stack(h, hidden=hidden, n_layers=n_layers, dropout=dropout, prefix="patch")
    attention = layers.Dense(n_outputs, name="attention_logits")(h)
    if task == "multilabel":
        per_patch = layers.Dense(
            n_outputs, activation="sigmoid", bias_initializer=output_bias_initializer(output_bias), name="patch_output"
        )(h)
        out = AttentionPool1D(name="output")([per_patch, attention], mask=mask)
    else:
        per_patch = layers.Dense(n_outputs, bias_initializer=output_bias_initializer(output_bias), name="patch_logits")(
            h
        )
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


HEADS = {"dense": dense_head, "autopool": autopool_head, "attention": attention_head, "mlp": mlp_head}
