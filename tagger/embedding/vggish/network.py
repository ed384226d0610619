"""The VGGish network in Keras 3 and its official weights (PCA postprocessing: :mod:`.postprocess`).

Network (as Google's ``vggish_slim.py``): conv 3x3 stride 1 SAME + ReLU
64 -> maxpool 2x2/2 SAME -> 128 -> pool -> 256, 256 -> pool -> 512, 512 ->
pool -> flatten (NHWC) -> fc 4096 ReLU -> fc 4096 ReLU -> fc 128 without
activation (the official ``fc2`` is pre-activation).

Weights come from a TF Hub handle, a local SavedModel folder, the TF-slim
checkpoint ``vggish_model.ckpt``, or a plain weights file (``.npz`` or
``.safetensors``, written by :func:`export_weights`); all use the official
variable names. TensorFlow is imported only to read the three TensorFlow
forms: the plain file loads on every Keras backend without it, with the same
:func:`weights_id` as the form it was exported from.
"""

import hashlib
import os

import numpy as np

from ...exceptions import DataError
from ...records import write_atomic
from ..weights import PLAIN_FORMATS
from ..weights import read_plain as _read_plain
from . import params

__all__ = [
    "check_source",
    "OFFICIAL_LAYERS",
    "build_vggish",
    "read_weights",
    "set_weights",
    "weights_id",
    "load_vggish",
    "network",
    "export_weights",
    "PLAIN_FORMATS",
]

#: the weights protocol every model's weights reader keeps (:func:`tagger.embedding.registry.weights_reader`):
#: ``WEIGHTS_ENV``, ``PLAIN_FORMATS``, ``resolve_source``, ``check_source``, ``check_plain_target``,
#: ``export_weights``
WEIGHTS_ENV = params.WEIGHTS_ENV

#: Keras layer name -> (official variable scope, kernel shape)
OFFICIAL_LAYERS = {
    "conv1": ("vggish/conv1", (3, 3, 1, 64)),
    "conv2": ("vggish/conv2", (3, 3, 64, 128)),
    "conv3_1": ("vggish/conv3/conv3_1", (3, 3, 128, 256)),
    "conv3_2": ("vggish/conv3/conv3_2", (3, 3, 256, 256)),
    "conv4_1": ("vggish/conv4/conv4_1", (3, 3, 256, 512)),
    "conv4_2": ("vggish/conv4/conv4_2", (3, 3, 512, 512)),
    "fc1_1": ("vggish/fc1/fc1_1", (6 * 4 * 512, 4096)),
    "fc1_2": ("vggish/fc1/fc1_2", (4096, 4096)),
    "fc2": ("vggish/fc2", (4096, params.EMBEDDING_SIZE)),
}

_WEIGHTS_HELP = (
    "VGGish weights are needed. Download them once, e.g. the TF Hub model "
    f"{params.VGGISH_HUB_HANDLE} (a SavedModel; unpack it into a folder) or the TF-slim "
    f"checkpoint {params.CHECKPOINT_URL}, then point tagger at the local copy with "
    f"--weights PATH or the environment variable {params.WEIGHTS_ENV}=PATH."
)


def official_names():
    """Every official variable name, e.g. ``vggish/conv3/conv3_1/weights``, with its shape."""
    names = {}
    for scope, kernel_shape in OFFICIAL_LAYERS.values():
        names[f"{scope}/weights"] = kernel_shape
        names[f"{scope}/biases"] = (kernel_shape[-1],)
    return names


def build_vggish(*, name="vggish", dtype="float32", initializer=None):
    """Build the VGGish network (random weights).

    Parameters
    ----------
    initializer : str, optional
        Keras initializer of every kernel and bias (default: Keras' own, random); ``'zeros'`` when weights
        are loaded next (no random numbers drawn for 72 M values that are overwritten: faster start-up).
    dtype : str
        ``'float32'``, ``'bfloat16'`` (every layer in bfloat16: this CPU's fast path) or ``'float16'``
        (Keras mixed precision: float16 compute over float32 weights, the GPU's fast path).

    Returns
    -------
    keras.Model
        Input ``(batch, 96, 64)`` float32 log-mel patches, output ``(batch, 128)``
        raw embeddings.
    """
    import keras
    from keras import layers

    dtype = "mixed_float16" if dtype == "float16" else dtype
    init = {} if initializer is None else {"kernel_initializer": initializer, "bias_initializer": initializer}
    inputs = keras.Input((params.NUM_FRAMES, params.NUM_BANDS), name="log_mel")
    x = layers.Reshape((params.NUM_FRAMES, params.NUM_BANDS, 1), dtype=dtype)(inputs)
    for lname in ("conv1", "conv2", "conv3_1", "conv3_2", "conv4_1", "conv4_2"):
        filters = OFFICIAL_LAYERS[lname][1][-1]
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=lname, dtype=dtype, **init)(x)
        if lname in ("conv1", "conv2", "conv3_2", "conv4_2"):
            x = layers.MaxPooling2D(2, strides=2, padding="same", name="pool" + lname[4], dtype=dtype)(x)
    x = layers.Flatten(name="flatten", dtype=dtype)(x)
    x = layers.Dense(4096, activation="relu", name="fc1_1", dtype=dtype, **init)(x)
    x = layers.Dense(4096, activation="relu", name="fc1_2", dtype=dtype, **init)(x)
    outputs = layers.Dense(params.EMBEDDING_SIZE, activation=None, name="fc2", dtype=dtype, **init)(x)
    return keras.Model(inputs, outputs, name=name)


def _strip(name):
    name = name.split(":")[0]
    return name[name.index("vggish/") :] if "vggish/" in name else name


def _collect_variables(obj):
    """All tf.Variables reachable from a loaded SavedModel object."""
    import tensorflow as tf

    found = list(getattr(obj, "variables", None) or [])
    if found:
        return found
    seen, stack = set(), [obj]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, tf.Variable):
            found.append(node)
            continue
        children = getattr(node, "_trackable_children", None)
        if callable(children):
            try:
                stack.extend(children().values())
            except Exception:  # noqa: BLE001 - some trackables refuse listing; skip them
                pass
    return found


def _read_savedmodel(path):
    import tensorflow as tf

    try:
        obj = tf.saved_model.load(path)
    except Exception as exc:  # noqa: BLE001 - TF raises many types here
        raise DataError(f"{path}: cannot load SavedModel ({exc})") from exc
    return {_strip(v.name): v.numpy() for v in _collect_variables(obj)}


def _read_checkpoint(path):
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(path)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: cannot read checkpoint ({exc})") from exc
    return {_strip(k): reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


def _read_hub(handle):
    try:
        import tensorflow_hub as hub
    except ImportError as exc:
        raise DataError(f"tensorflow_hub cannot be imported ({exc}); {_WEIGHTS_HELP}") from exc
    try:
        path = hub.resolve(handle)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise DataError(f"cannot fetch VGGish weights from {handle} ({exc}). {_WEIGHTS_HELP}") from exc
    return _read_savedmodel(path)


def resolve_source(source=None):
    """The weights source in force: ``source``, else ``$TAGGER_VGGISH_WEIGHTS``, else the hub handle."""
    return os.fspath(source) if source else os.environ.get(params.WEIGHTS_ENV) or params.VGGISH_HUB_HANDLE


def check_source(source=None):
    """The weights source in force and its form, checked on disk without reading it (no TensorFlow).

    Returns
    -------
    source : str
    form : {'plain', 'hub', 'savedmodel', 'checkpoint'}

    Raises
    ------
    DataError
        A local source that is not there, or a folder without ``saved_model.pb``.
    """
    source = resolve_source(source)
    if source.endswith(PLAIN_FORMATS):
        if not os.path.isfile(source):
            raise DataError(f"{source}: no such weights file. {_WEIGHTS_HELP}")
        return source, "plain"
    if "://" in source:
        return source, "hub"
    if os.path.isdir(source):
        if not os.path.exists(os.path.join(source, "saved_model.pb")):
            raise DataError(f"{source}: folder holds no saved_model.pb. {_WEIGHTS_HELP}")
        return source, "savedmodel"
    if os.path.exists(source) or os.path.exists(source + ".index"):
        return source, "checkpoint"
    raise DataError(f"{source}: no such SavedModel folder or checkpoint. {_WEIGHTS_HELP}")


def read_weights(source=None):
    """Read official VGGish weights from any form a user may hold.

    Parameters
    ----------
    source : str or os.PathLike, optional
        A local SavedModel folder, a TF-slim checkpoint (``vggish_model.ckpt``,
        V1 or V2 format), a plain ``.npz`` / ``.safetensors`` file (no
        TensorFlow needed), or a TF Hub handle (downloaded once and cached in
        ``$TFHUB_CACHE_DIR``). Default: ``$TAGGER_VGGISH_WEIGHTS``, else
        :data:`tagger.embedding.vggish.params.VGGISH_HUB_HANDLE`.

    Returns
    -------
    dict of str -> np.ndarray
        Official variable name -> value, only the 18 VGGish variables.

    Raises
    ------
    DataError
        Missing source, unreadable file, missing or misshapen variables, NaN or infinite values (named by
        tensor): refused before any clip is embedded.
    """
    source, form = check_source(source)
    reader = {"plain": _read_plain, "hub": _read_hub, "savedmodel": _read_savedmodel, "checkpoint": _read_checkpoint}
    raw = reader[form](source)
    weights = {}
    problems = []
    for name, shape in official_names().items():
        if name not in raw:
            problems.append(f"{name} missing")
        elif tuple(raw[name].shape) != shape:
            problems.append(f"{name} has shape {tuple(raw[name].shape)}, expected {shape}")
        else:
            weights[name] = np.asarray(raw[name], dtype=np.float32)
            bad = int(np.size(weights[name]) - np.count_nonzero(np.isfinite(weights[name])))
            if bad:
                problems.append(f"{name} holds {bad} NaN or infinite value{'s' * (bad > 1)}")
    if problems:
        damaged = all("NaN or infinite" in p for p in problems)
        fix = ": the file is damaged; export or download the weights again" if damaged else ""
        raise DataError(f"{source}: not VGGish weights: " + "; ".join(problems[:6]) + fix)
    return weights


def weights_id(weights):
    """Short content hash identifying a set of weights, e.g. ``'vggish-sha1:3f2a...'``."""
    digest = hashlib.sha1()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights[name], dtype=np.float32).tobytes())
    return "vggish-sha1:" + digest.hexdigest()[:16]


def set_weights(model, weights):
    """Copy official weights (``read_weights`` output) into a :func:`build_vggish` model."""
    for lname, (scope, _) in OFFICIAL_LAYERS.items():
        model.get_layer(lname).set_weights([weights[f"{scope}/weights"], weights[f"{scope}/biases"]])
    return model


def network(weights, *, name="vggish", dtype="float32"):
    """VGGish in ``dtype`` holding official weights (:func:`read_weights` output), built without random values.

    Returns
    -------
    keras.Model
    """
    return set_weights(build_vggish(name=name, dtype=dtype, initializer="zeros"), weights)


def trunk(*, weights=None, name="vggish", dtype="float32"):
    """VGGish to fine-tune (the registry's ``trunk`` hook): random-initialised layers that train, then the weights
    of ``weights`` (any form :func:`read_weights` accepts) copied in.

    Returns
    -------
    keras.Model
        (n, 96, 64) -> (n, 128) raw embeddings.
    """
    return set_weights(build_vggish(name=name, dtype=dtype), read_weights(weights))


def load_vggish(source=None):
    """Build VGGish and load official weights.

    Returns
    -------
    model : keras.Model
    identifier : str
        :func:`weights_id` of the loaded weights.
    """
    weights = read_weights(source)
    return network(weights), weights_id(weights)


def check_plain_target(out):
    """Refuse an export target that is not a plain weights file (``.npz`` or ``.safetensors``)."""
    if not os.fspath(out).endswith(PLAIN_FORMATS):
        raise DataError(f"{os.fspath(out)}: a plain weights file ends in {' or '.join(PLAIN_FORMATS)}")


def export_weights(source, out):
    """Write VGGish weights from any form :func:`read_weights` reads as a plain file that needs no TensorFlow.

    Parameters
    ----------
    source : str or os.PathLike or None
        As :func:`read_weights` takes it.
    out : str or os.PathLike
        ``*.npz`` (NumPy) or ``*.safetensors``; the 18 official variable names
        inside, float32. Written atomically.

    Returns
    -------
    str
        :func:`weights_id` of the weights: the same for the source and the file.
    """
    out = os.fspath(out)
    check_plain_target(out)
    weights = read_weights(source)
    if out.endswith(".safetensors"):
        from safetensors.numpy import save

        write_atomic(out, lambda f: f.write(save(weights, metadata={"weights_id": weights_id(weights)})), binary=True)
    else:
        write_atomic(out, lambda f: np.savez(f, **weights), binary=True)
    return weights_id(weights)
