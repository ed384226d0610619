"""Fine-tuning VGGish itself: the network as a trunk under any head, trained on a log-mel patch cache.

A config's ``trunk`` section (``tagger train``) puts VGGish, loaded from any
weight form tagger accepts, between the cached patches and the head::

    "trunk": {"weights": null, "train": "fc", "learning_rate_scale": 0.1}

``train`` says how much of it learns: ``none`` (frozen: the head sees the
embeddings a cache would hold), ``fc`` (the three dense layers), ``conv4``
(the last conv block and the dense layers) or ``all``. The trunk's weights
move at ``learning_rate_scale`` times the head's learning rate (an optimizer
that scales the step of the trunk's variables; its state is saved with the
model, so a run resumes). On a GPU the trunk computes in mixed precision.
The trunk is part of the run's ``model.keras``; ``tagger tag --model RUN``
feeds it patches (the run's ``bundle.json`` says ``melspec``) and so runs the
fine-tuned network, not a cache's embeddings.
"""

import keras
from keras import ops

from ..embedding import registry
from ..exceptions import ParameterError
from .config import OPTIMIZERS

__all__ = ["TRAINABLE", "load_trunk", "trunk_model", "optimizer", "TRUNK_NAME"]

TRUNK_NAME = "vggish_trunk"
#: layers of VGGish that learn, per ``train`` setting
TRAINABLE = {
    "none": (),
    "fc": ("fc1_1", "fc1_2", "fc2"),
    "conv4": ("conv4_1", "conv4_2", "fc1_1", "fc1_2", "fc2"),
    "all": ("conv1", "conv2", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "fc1_1", "fc1_2", "fc2"),
}


@keras.saving.register_keras_serializable(package="tagger")
class PerPatch(keras.layers.Layer):
    """Apply a network to every patch of a clip: (batch, time, 96, 64) -> (batch, time, out)."""

    def __init__(self, network, **kwargs):
        super().__init__(**kwargs)
        self.network = keras.saving.deserialize_keras_object(network) if isinstance(network, dict) else network

    def call(self, x):
        shape = ops.shape(x)
        flat = ops.reshape(x, (-1, x.shape[2], x.shape[3]))
        out = ops.cast(self.network(flat), "float32")
        return ops.reshape(out, (shape[0], shape[1], out.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.network.output_shape[-1])

    def get_config(self):
        return {**super().get_config(), "network": keras.saving.serialize_keras_object(self.network)}


def load_trunk(*, model="vggish", weights=None, train="none", dtype="float32"):
    """A model's network (its registry ``trunk`` hook) with its weights, its layers trainable as ``train`` says.

    Parameters
    ----------
    model : str
        A registered model with a ``trunk`` hook (:class:`tagger.embedding.registry.Model`).
    weights : str, optional
        Any weight form the model reads (VGGish: :func:`tagger.embedding.vggish.network.read_weights`, default
        ``$TAGGER_VGGISH_WEIGHTS``).
    train : {'none', 'fc', 'conv4', 'all'}
    dtype : {'float32', 'float16'}
        float16: Keras mixed precision (the GPU's fast path).

    Returns
    -------
    keras.Model
        (n, 96, 64) -> (n, 128) raw embeddings.
    """
    if train not in TRAINABLE:
        raise ParameterError(f"config key trunk.train={train!r} must be one of {', '.join(TRAINABLE)}")
    spec = registry.model(model)
    if spec.trunk is None:
        raise ParameterError(f"config key trunk.name={model!r}: that model has no network to fine-tune")
    trunk = registry.resolve(spec.trunk)(weights=weights, name=TRUNK_NAME, dtype=dtype)
    for layer in trunk.layers:
        layer.trainable = layer.name in TRAINABLE[train]
    return trunk


def trunk_model(head, trunk):
    """``head`` on the embeddings ``trunk`` makes of each patch: inputs x (batch, time, 96, 64) and mask."""
    x = keras.Input((None, *trunk.input_shape[1:]), name="x")
    mask = keras.Input((None,), name="mask")
    emb = PerPatch(trunk, name="per_patch")(x)
    return keras.Model([x, mask], head([emb, mask]), name=f"{TRUNK_NAME}_{head.name}")


class _TrunkScaled:
    """Optimizer mixin: variables of the trunk's layers (by layer name) step at ``trunk_scale`` times the learning rate.

    The trunk's layers keep VGGish's official names (``conv1`` ... ``fc2``),
    which no head uses; a variable's Keras path starts with its layer's name.
    """

    def __init__(self, *args, trunk_scale=0.1, trunk_layers=TRAINABLE["all"], **kwargs):
        super().__init__(*args, **kwargs)
        self.trunk_scale = float(trunk_scale)
        self.trunk_layers = tuple(trunk_layers)

    def update_step(self, gradient, variable, learning_rate):
        # the backend may hand over its own variable: find the Keras one, which knows its path
        keras_variable = self._trainable_variables[self._get_variable_index(variable)]
        if keras_variable.path.split("/")[0] in self.trunk_layers:
            learning_rate = ops.cast(learning_rate, variable.dtype) * self.trunk_scale
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "trunk_scale": self.trunk_scale, "trunk_layers": list(self.trunk_layers)}


def _trunk_optimizer(keras_name):
    """``Trunk<Name>``: Keras's optimizer of that name, with the trunk's steps scaled (registered for saving)."""
    base = getattr(keras.optimizers, keras_name)
    cls = type(f"Trunk{keras_name}", (_TrunkScaled, base), {"__module__": __name__, "__doc__": _TrunkScaled.__doc__})
    return keras.saving.register_keras_serializable(package="tagger")(cls)


#: config name -> trunk-scaled optimizer (TrunkAdam, TrunkAdamW, TrunkSGD, TrunkRMSprop), from the one list of names
TRUNK_OPTIMIZERS = {name: _trunk_optimizer(keras_name) for name, keras_name in OPTIMIZERS.items()}


def optimizer(name, *, trunk_scale, **kwargs):
    """The named optimizer with the trunk's steps scaled by ``trunk_scale``."""
    return TRUNK_OPTIMIZERS[name](trunk_scale=trunk_scale, **kwargs)
