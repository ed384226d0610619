"""musicnn's four networks in Keras 3 (every backend) and their weights, read from musicnn's own checkpoints.

Architectures after musicnn 0.1.0's ``models.py``, layer by layer; each Keras layer carries the name TensorFlow 1
gave its variables when musicnn created them (``conv2d_5``, ``batch_normalization_9``, ``1CNN`` ...), so the
checkpoint's variables map onto the layers by creation order, as those names number it (Adam's slots and the
step counters are skipped). Inference only: dropout is the identity, batch normalisation uses its moving
statistics (epsilon 1e-3, TensorFlow 1's default and Keras').

``musicnn`` (``build_musicnn``): batch-norm on the input; front-end of two timbral convolutions (7 x 38 and
7 x 67, 204 filters each, valid over frequency after 3 frames of zero padding in time) and three temporal ones
(128 x 1, 64 x 1, 32 x 1, 51 filters, same), each ReLU -> batch-norm -> max over frequency, joined to 561 per
frame; mid-end of three 7 x 64 convolutions (64 filters) with residual connections; joined with the front-end
to 753 per frame; ``max_pool`` and ``mean_pool`` over time (753 each); their interleaved 1,506 -> batch-norm ->
dense 200 ReLU -> batch-norm (``penultimate``) -> dense 50 (logits; ``taggram``: sigmoid).

``vgg`` (``build_vgg``): batch-norm on the input; five 3 x 3 convolutions of 128 (ReLU -> batch-norm -> max
pool 4x1/2, 2x2/2, 2x2/2, 2x2/2, 4x4/4); ``pool5`` (2 x 1 x 128) flattened to 256 -> dense 50.

Weights come from an installed ``musicnn`` package (found with :func:`importlib.util.find_spec`, never
imported), a folder of its checkpoints (``$TAGGER_MUSICNN_WEIGHTS``), one checkpoint folder or a plain weights
file (``--weights``); TensorFlow is imported only to read a checkpoint.
"""

import hashlib
import importlib.util
import os

import numpy as np

from ...exceptions import DataError
from ...records import write_atomic
from ..weights import PLAIN_FORMATS
from ..weights import read_plain as _read_plain
from . import params

__all__ = [
    "build",
    "build_musicnn",
    "build_vgg",
    "read_weights",
    "weights_id",
    "network",
    "resolve_source",
    "check_source",
    "check_plain_target",
    "export_weights",
    "installed_folder",
    "PLAIN_FORMATS",
    "WEIGHTS_ENV",
    "WeightsReader",
    "output_layer",
]

#: the weights protocol (:attr:`tagger.embedding.registry.Model.weights_reader`)
WEIGHTS_ENV = params.WEIGHTS_ENV

_BN = ("gamma", "beta", "moving_mean", "moving_variance")


def _help(folder):
    return (
        f"musicnn's weights for {folder} are needed: `pip install --no-deps musicnn` (its wheel holds them; tagger"
        f" never imports it), or set {params.WEIGHTS_ENV} to a folder holding {folder}/, or pass --weights"
        f" with a checkpoint folder or a plain weights file (.npz, .safetensors; `tagger weights export`)"
    )


def build_musicnn(*, name="musicnn", dtype="float32"):
    """musicnn (Pons & Serra 2019) with zero weights, to be loaded.

    Returns
    -------
    keras.Model
        ``(batch, 187, 96)`` log-mel patches -> dict of ``taggram`` (batch, 50) sigmoids, ``max_pool`` and
        ``mean_pool`` (batch, 753), ``penultimate`` (batch, 200).
    """
    import keras
    from keras import layers

    dtype = "mixed_float16" if dtype == "float16" else dtype
    n, m = params.NUM_FRAMES, params.N_MELS
    kw = dict(dtype=dtype, kernel_initializer="zeros", bias_initializer="zeros")
    bn_count = iter(range(100))

    def bn(x):
        i = next(bn_count)
        return layers.BatchNormalization(name="batch_normalization" + (f"_{i}" if i else ""), dtype=dtype)(x)

    def pad_time(x):
        return layers.ZeroPadding2D(((3, 3), (0, 0)), dtype=dtype)(x)

    def pooled(x, conv_name, filters, kernel, padding):
        x = layers.Conv2D(filters, kernel, padding=padding, activation="relu", name=conv_name, **kw)(x)
        x = bn(x)
        x = layers.MaxPooling2D((1, x.shape[2]), strides=(1, x.shape[2]), dtype=dtype)(x)
        return layers.Reshape((n, filters), dtype=dtype)(x)

    inputs = keras.Input(params.PATCH_SHAPE, name="log_mel")
    x = bn(layers.Reshape((n, m, 1), dtype=dtype)(inputs))
    timbral_filters = int(params.FRONTEND_FILTER_FACTOR * 128)
    temporal_filters = int(params.FRONTEND_FILTER_FACTOR * 32)
    padded = pad_time(x)
    front = [
        pooled(padded, "conv2d", timbral_filters, (7, int(0.4 * m)), "valid"),
        pooled(padded, "conv2d_1", timbral_filters, (7, int(0.7 * m)), "valid"),
        pooled(x, "conv2d_2", temporal_filters, (128, 1), "same"),
        pooled(x, "conv2d_3", temporal_filters, (64, 1), "same"),
        pooled(x, "conv2d_4", temporal_filters, (32, 1), "same"),
    ]
    front = layers.Reshape((n, 2 * timbral_filters + 3 * temporal_filters, 1), dtype=dtype)(
        layers.Concatenate(axis=2, dtype=dtype)(front)
    )
    filters = params.MUSICNN_MIDEND_FILTERS
    mid = [front]
    h = front
    for i, conv_name in enumerate(("conv2d_5", "conv2d_6", "conv2d_7")):
        c = layers.Conv2D(filters, (7, h.shape[2]), padding="valid", activation="relu", name=conv_name, **kw)(
            pad_time(h)
        )
        c = layers.Permute((1, 3, 2), dtype=dtype)(bn(c))  # (n, 1, 64) -> (n, 64, 1)
        h = c if i == 0 else layers.Add(dtype=dtype)([c, h])
        mid.append(h)
    features = layers.Reshape((n, params.MIDEND_SIZE), dtype=dtype)(layers.Concatenate(axis=2, dtype=dtype)(mid))
    max_pool = layers.GlobalMaxPooling1D(name="max_pool", dtype=dtype)(features)
    mean_pool = layers.GlobalAveragePooling1D(name="mean_pool", dtype=dtype)(features)
    pair = layers.Concatenate(axis=2, dtype=dtype)(
        [layers.Reshape((params.MIDEND_SIZE, 1), dtype=dtype)(p) for p in (max_pool, mean_pool)]
    )
    h = bn(layers.Flatten(dtype=dtype)(pair))  # max and mean interleaved, as tf.concat(..., 2) then flatten
    h = layers.Dense(params.MUSICNN_BACKEND_UNITS, activation="relu", name="dense", **kw)(h)
    penultimate = bn(h)
    logits = layers.Dense(params.NUM_CLASSES, name="dense_1", **kw)(penultimate)
    taggram = layers.Activation("sigmoid", dtype=dtype)(logits)
    outputs = {"taggram": taggram, "max_pool": max_pool, "mean_pool": mean_pool, "penultimate": penultimate}
    return keras.Model(inputs, outputs, name=name)


def build_vgg(*, name="vgg", dtype="float32"):
    """musicnn's vgg with zero weights, to be loaded.

    Returns
    -------
    keras.Model
        ``(batch, 187, 96)`` -> dict of ``taggram`` (batch, 50) and ``pool5`` (batch, 256).
    """
    import keras
    from keras import layers

    dtype = "mixed_float16" if dtype == "float16" else dtype
    kw = dict(dtype=dtype, kernel_initializer="zeros", bias_initializer="zeros")
    inputs = keras.Input(params.PATCH_SHAPE, name="log_mel")
    x = layers.Reshape((*params.PATCH_SHAPE, 1), dtype=dtype)(inputs)
    x = layers.BatchNormalization(name="batch_normalization", dtype=dtype)(x)
    pools = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))
    for i, (size, strides) in enumerate(pools, start=1):
        x = layers.Conv2D(params.VGG_FILTERS, 3, padding="same", activation="relu", name=f"{i}CNN", **kw)(x)
        x = layers.BatchNormalization(name=f"batch_normalization_{i}", dtype=dtype)(x)
        x = layers.MaxPooling2D(size, strides=strides, dtype=dtype)(x)
    pool5 = layers.Flatten(name="pool5", dtype=dtype)(x)
    logits = layers.Dense(params.NUM_CLASSES, name="dense", **kw)(pool5)
    taggram = layers.Activation("sigmoid", dtype=dtype)(logits)
    return keras.Model(inputs, {"taggram": taggram, "pool5": pool5}, name=name)


def build(name, *, dtype="float32"):
    """The network tagger names ``name`` (``'musicnn-mtt'``, ``'vgg-msd'`` ...), zero weights."""
    _, architecture, _ = params.network(name)
    builder = build_musicnn if architecture == "musicnn" else build_vgg
    return builder(name=name.replace("-", "_"), dtype=dtype)


def variable_shapes(name):
    """Every variable a network's weights hold, ``'conv2d_5/kernel'`` -> shape (what a checkpoint must have)."""
    shapes = {}
    for layer in build(name).layers:
        values = layer.get_weights()
        if not values:
            continue
        fields = _BN if len(values) == 4 else ("kernel", "bias")
        shapes.update({f"{layer.name}/{f}": tuple(v.shape) for f, v in zip(fields, values)})
    return shapes


def installed_folder():
    """The folder of an installed ``musicnn`` package (its checkpoints inside), or None; musicnn is not imported
    (importing it turns off TensorFlow's eager mode for the whole process)."""
    try:
        spec = importlib.util.find_spec(params.PACKAGE)
    except (ImportError, ValueError):
        return None
    locations = list(getattr(spec, "submodule_search_locations", None) or []) if spec else []
    return locations[0] if locations else None


def resolve_source(source=None, name="musicnn-mtt"):
    """The weights source in force for a network: ``source``, else its folder in ``$TAGGER_MUSICNN_WEIGHTS``,
    else in the installed ``musicnn`` package.

    Raises
    ------
    DataError
        None of the three is there (the message names all three).
    """
    if source:
        return os.fspath(source)
    folder = params.network(name)[0]
    for base in (os.environ.get(params.WEIGHTS_ENV), installed_folder()):
        if base and os.path.isdir(os.path.join(base, folder)):
            return os.path.join(base, folder)
    env = os.environ.get(params.WEIGHTS_ENV)
    where = f" ({params.WEIGHTS_ENV}={env} holds no {folder}/)" if env else ""
    raise DataError(f"no musicnn weights found{where}. {_help(folder)}")


def check_source(source=None, name="musicnn-mtt"):
    """The weights source in force and its form (``'plain'`` or ``'checkpoint'``), checked on disk without reading it.

    Raises
    ------
    DataError
    """
    source = resolve_source(source, name)
    folder = params.network(name)[0]
    if source.endswith(PLAIN_FORMATS):
        if not os.path.isfile(source):
            raise DataError(f"{source}: no such weights file. {_help(folder)}")
        return source, "plain"
    if os.path.isdir(source):
        if not any(f.endswith(".index") for f in os.listdir(source)):
            raise DataError(f"{source}: folder holds no checkpoint (.index file). {_help(folder)}")
        return source, "checkpoint"
    if os.path.exists(source + ".index"):
        return source, "checkpoint"
    raise DataError(f"{source}: no such checkpoint folder or weights file. {_help(folder)}")


def _read_checkpoint(source):
    import tensorflow as tf

    # musicnn's folders name their files '.index', '.data-…' and their 'checkpoint' file points at the author's
    # home: tf.train.load_checkpoint(folder) fails there, the reader with the folder's prefix ('folder/') reads them
    prefix = source + "/" if os.path.isdir(source) else source
    try:
        reader = tf.compat.v1.train.NewCheckpointReader(prefix)
    except Exception as exc:  # noqa: BLE001 - TensorFlow raises many types here
        raise DataError(f"{source}: cannot read checkpoint ({exc})") from exc
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


def read_weights(source=None, name="musicnn-mtt"):
    """A network's weights, from any form :func:`check_source` accepts.

    Returns
    -------
    dict of str -> np.ndarray
        ``'conv2d_5/kernel'`` -> float32 value, exactly the network's variables.

    Raises
    ------
    DataError
        Missing or misshapen variables (another network's checkpoint, say), NaN or infinite values.
    """
    source, form = check_source(source, name)
    raw = (_read_plain if form == "plain" else _read_checkpoint)(source)
    weights, problems = {}, []
    for var, shape in variable_shapes(name).items():
        if var not in raw:
            problems.append(f"{var} missing")
        elif tuple(raw[var].shape) != shape:
            problems.append(f"{var} has shape {tuple(raw[var].shape)}, expected {shape}")
        else:
            weights[var] = np.asarray(raw[var], np.float32)
            bad = int(weights[var].size - np.count_nonzero(np.isfinite(weights[var])))
            if bad:
                problems.append(f"{var} holds {bad} NaN or infinite value{'s' * (bad > 1)}")
    if problems:
        raise DataError(f"{source}: not {name} weights ({params.network(name)[0]}): " + "; ".join(problems[:6]))
    return weights


def weights_id(weights, name="musicnn-mtt"):
    """Short content hash of a network's weights, e.g. ``'musicnn-mtt-sha1:3f2a…'`` (the same from a checkpoint
    and from its plain export)."""
    digest = hashlib.sha1()
    for var in sorted(weights):
        digest.update(var.encode())
        digest.update(np.ascontiguousarray(weights[var], dtype=np.float32).tobytes())
    return f"{name}-sha1:" + digest.hexdigest()[:16]


def network(weights, name="musicnn-mtt", *, dtype="float32"):
    """The network ``name`` in ``dtype`` holding ``weights`` (:func:`read_weights` output)."""
    model = build(name, dtype=dtype)
    for layer in model.layers:
        values = layer.get_weights()
        if values:
            fields = _BN if len(values) == 4 else ("kernel", "bias")
            layer.set_weights([weights[f"{layer.name}/{f}"] for f in fields])
    return model


def output_layer(weights, name="musicnn-mtt"):
    """The network's own tagging layer: ``(kernel (D, 50), bias (50,))`` from ``penultimate`` (musicnn, D = 200) or
    ``pool5`` (vgg, D = 256) to its 50 logits (what its shipped taggers are: :mod:`experiments.ship_musicnn_taggers`)."""
    layer = "dense_1" if params.network(name)[1] == "musicnn" else "dense"
    return weights[f"{layer}/kernel"], weights[f"{layer}/bias"]


def check_plain_target(out):
    """Refuse an export target that is not a plain weights file."""
    if not os.fspath(out).endswith(PLAIN_FORMATS):
        raise DataError(f"{os.fspath(out)}: a plain weights file ends in {' or '.join(PLAIN_FORMATS)}")


def export_weights(source, out, name="musicnn-mtt"):
    """Write a network's weights as a plain file (``.npz`` / ``.safetensors``) that needs no TensorFlow.

    Returns
    -------
    str
        :func:`weights_id`: the same for the source and the file.
    """
    out = os.fspath(out)
    check_plain_target(out)
    weights = read_weights(source, name)
    wid = weights_id(weights, name)
    if out.endswith(".safetensors"):
        from safetensors.numpy import save

        write_atomic(out, lambda f: f.write(save(weights, metadata={"weights_id": wid})), binary=True)
    else:
        write_atomic(out, lambda f: np.savez(f, **weights), binary=True)
    return wid


class WeightsReader:
    """The weights protocol (:attr:`tagger.embedding.registry.Model.weights_reader`) for one of the networks."""

    WEIGHTS_ENV = params.WEIGHTS_ENV
    PLAIN_FORMATS = PLAIN_FORMATS

    def __init__(self, name):
        params.network(name)
        self.name = name

    def resolve_source(self, source=None):
        return resolve_source(source, self.name)

    def check_source(self, source=None):
        return check_source(source, self.name)

    def check_plain_target(self, out):
        check_plain_target(out)

    def export_weights(self, source, out):
        return export_weights(source, out, self.name)
