"""Heads over embedding rows (VGGish embeddings, or a handcrafted feature row): dense, autopool, attention,
feature_attention, multilevel_attention, mlp.

Each takes ``x`` (batch, time, embedding_size) float32 and ``mask`` (batch, time) and returns clip-level
probabilities (batch, n_outputs).
"""

from ...exceptions import ParameterError
from .common import dense_stack, dropout_layer, final_activation, inputs, output_bias_initializer

__all__ = [
    "HEADS",
    "dense_head",
    "autopool_head",
    "attention_head",
    "feature_attention_head",
    "multilevel_attention_head",
    "mlp_head",
]


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

    x, mask, h = inputs(embedding_size, standardize, input_stats)
    h = dense_stack(h, hidden=hidden, n_layers=n_layers, dropout=dropout, prefix="patch")
    multilabel = task == "multilabel"  # pooled probabilities are the output; pooled logits go through a softmax
    pooled = _decision_attention(
        h, mask, n_outputs, task, output_bias=output_bias, pool_name="output" if multilabel else "attention"
    )
    out = pooled if multilabel else layers.Activation("softmax", name="output")(pooled)
    return keras.Model([x, mask], out, name="attention")


def _decision_attention(h, mask, n_outputs, task, *, output_bias, prefix="", pool_name=None):
    """Decision-level attention over one level's per-patch features: (batch, time, d) -> (batch, n_outputs)
    probabilities pooled over time (multi-label), or pooled logits (single-label). The ``attention`` head's, and
    each level's of ``multilevel_attention``; layers named with ``prefix``, the pool ``pool_name`` (default
    ``<prefix>attention``)."""
    from keras import layers

    from ..layers import AttentionPool1D

    attention = layers.Dense(n_outputs, name=f"{prefix}attention_logits")(h)
    if task == "multilabel":
        per_patch = layers.Dense(
            n_outputs,
            activation="sigmoid",
            bias_initializer=output_bias_initializer(output_bias),
            name=f"{prefix}patch_output",
        )(h)
    else:
        per_patch = layers.Dense(
            n_outputs, bias_initializer=output_bias_initializer(output_bias), name=f"{prefix}patch_logits"
        )(h)
    return AttentionPool1D(name=pool_name or f"{prefix}attention")([per_patch, attention], mask=mask)


def feature_attention_head(
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
    """Feature-level attention (Kong et al., TASLP 2019, arXiv:1903.00765): attention over time per hidden unit,
    then the classifier on the pooled features.

    Per patch, the dense stack; then ``hidden`` values (a linear Dense) and ``hidden`` attention weights (a
    sigmoid Dense) per patch, pooled over time by the weights normalised by their sum over the clip's patches
    (``AttentionPool1D(normalization='sum')``); then [BatchNorm, ReLU, Dropout] and the output layer. As the
    paper's released Keras code (qiuqiangkong/audioset_classification, ``feature_level_attention``): the linear
    values, the sigmoid attention clipped to [1e-7, 1 - 1e-7] and divided by its sum, the block after pooling.
    Differs: the stack's depth and width are settings (the code: 3 x 1024 units, dropout 0.5, no input
    standardisation); padding patches carry no weight (the code pools 10 fixed patches); a single-label task gets
    a softmax output; the output bias may start at the label priors.
    """
    import keras
    from keras import layers

    from ..layers import AttentionPool1D

    x, mask, h = inputs(embedding_size, standardize, input_stats)
    h = dense_stack(h, hidden=hidden, n_layers=n_layers, dropout=dropout, prefix="patch")
    values = layers.Dense(hidden, name="feature_values")(h)
    attention = layers.Dense(hidden, activation="sigmoid", name="feature_attention")(h)
    pooled = AttentionPool1D(normalization="sum", name="feature_pool")([values, attention], mask=mask)
    pooled = layers.BatchNormalization(name="clip_bn")(pooled)
    pooled = layers.Activation("relu", name="clip_relu")(pooled)
    if dropout:
        pooled = dropout_layer(dropout, name="clip_dropout")(pooled)
    out = layers.Dense(
        n_outputs,
        activation=final_activation(task),
        bias_initializer=output_bias_initializer(output_bias),
        name="output",
    )(pooled)
    return keras.Model([x, mask], out, name="feature_attention")


def multilevel_attention_head(
    n_outputs,
    task,
    *,
    hidden=256,
    n_layers=2,
    dropout=0.3,
    levels=None,
    standardize=False,
    embedding_size=None,
    output_bias=None,
    input_stats=None,
):
    """Multi-level attention (Yu et al., EUSIPCO 2018, arXiv:1803.02353): decision-level attention at the last
    ``levels`` blocks of the dense stack (default two, one where the stack has one), their clip outputs
    concatenated and mapped to the classes by a Dense.

    Each level has its own per-patch predictions and attention (as the paper and Kong et al.'s Keras
    re-implementation, ``multi_attention``, which uses 3 x 1024 units, dropout 0.5 and the last two of three
    blocks); the concatenated clip predictions go through one Dense with the task's activation. Differs: the
    attention weights are a softmax over the clip's real patches (as tagger's ``attention`` head; that code
    normalises a softmax over classes by its sum over time); a single-label task pools per-patch logits and
    ends in a softmax; ``levels`` and the stack's size are settings.
    """
    import keras
    from keras import layers

    levels = min(2, n_layers) if levels is None else levels
    if not isinstance(levels, int) or isinstance(levels, bool) or not 1 <= levels <= n_layers:
        raise ParameterError(f"levels={levels!r} must be an integer from 1 to n_layers={n_layers}")
    x, mask, h = inputs(embedding_size, standardize, input_stats)
    blocks = dense_stack(h, hidden=hidden, n_layers=n_layers, dropout=dropout, prefix="patch", levels=True)
    pooled = [
        _decision_attention(block, mask, n_outputs, task, output_bias=output_bias, prefix=f"level{i}_")
        for i, block in enumerate(blocks[-levels:])
    ]
    joined = pooled[0] if levels == 1 else layers.Concatenate(name="levels")(pooled)
    out = layers.Dense(n_outputs, activation=final_activation(task), name="output")(joined)
    return keras.Model([x, mask], out, name="multilevel_attention")


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


HEADS = {
    "dense": dense_head,
    "autopool": autopool_head,
    "attention": attention_head,
    "feature_attention": feature_attention_head,
    "multilevel_attention": multilevel_attention_head,
    "mlp": mlp_head,
}
