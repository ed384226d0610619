"""Custom Keras 3 layers: AutoPool1D, masked pooling over patches, and patches-to-spectrogram for the CNN heads."""

import keras
from keras import ops

__all__ = ["AutoPool1D", "MaskedMean", "AttentionPool1D", "Ensemble", "PatchFrames", "SequenceMask"]


def _mask_weights(mask, like):
    """(batch, time) mask -> (batch, time, 1) float; all ones when mask is None."""
    if mask is None:
        return ops.ones_like(like[..., :1])
    return ops.expand_dims(ops.cast(mask, like.dtype), -1)


def _masked_softmax(logits, mask):
    """Softmax over axis 1 ignoring masked steps; logits (batch, time, classes)."""
    m = _mask_weights(mask, logits)
    logits = ops.where(m > 0, logits, ops.full_like(logits, -1e9))
    logits = logits - ops.max(logits, axis=1, keepdims=True)
    w = ops.exp(logits) * m
    return w / ops.maximum(ops.sum(w, axis=1, keepdims=True), 1e-12)


@keras.saving.register_keras_serializable(package="tagger")
class AutoPool1D(keras.layers.Layer):
    """Adaptive pooling over time with a learnable alpha per class (McFee et al., 2018).

    ``y_c = sum_t x_tc * softmax_t(alpha_c * x_tc)``: alpha = 0 is the mean,
    alpha -> inf the max, alpha -> -inf the min. Masked steps have no influence.

    Call arguments: ``inputs`` (batch, time, classes); ``mask`` (batch, time), optional.
    Output: (batch, classes).
    """

    def __init__(self, alpha_init=0.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha_init = float(alpha_init)

    def build(self, input_shape):
        self.alpha = self.add_weight(
            shape=(input_shape[-1],), initializer=keras.initializers.Constant(self.alpha_init), name="alpha"
        )

    def call(self, inputs, mask=None):
        weights = _masked_softmax(inputs * self.alpha, mask)
        return ops.sum(inputs * weights, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "alpha_init": self.alpha_init}


@keras.saving.register_keras_serializable(package="tagger")
class MaskedMean(keras.layers.Layer):
    """Mean over time of the unmasked steps: (batch, time, d) -> (batch, d)."""

    def call(self, inputs, mask=None):
        m = _mask_weights(mask, inputs)
        return ops.sum(inputs * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)

    def compute_mask(self, inputs, mask=None):
        return None


@keras.saving.register_keras_serializable(package="tagger")
class AttentionPool1D(keras.layers.Layer):
    """Attention over time (Kong et al., 2018): ``y_c = sum_t v_tc * w_tc``, the weights ``w`` normalised over time.

    Parameters
    ----------
    normalization : {'softmax', 'sum'}
        ``'softmax'`` (the default): ``w = softmax_t(a)`` of attention logits ``a``. ``'sum'``: ``w = a / sum_t a``
        of attention in (0, 1) (a sigmoid's), clipped to [1e-7, 1 - 1e-7] first, as Kong et al.'s released
        code does for feature-level attention (TASLP 2019).

    Call arguments: ``[values, attention]``, both (batch, time, channels); mask (batch, time): masked steps get
    no weight. Output: (batch, channels).
    """

    def __init__(self, normalization="softmax", **kwargs):
        super().__init__(**kwargs)
        if normalization not in ("softmax", "sum"):
            raise ValueError(f"normalization={normalization!r} must be 'softmax' or 'sum'")
        self.normalization = normalization

    def call(self, inputs, mask=None):
        values, attention = inputs
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if self.normalization == "softmax":
            weights = _masked_softmax(attention, mask)
        else:
            weights = ops.clip(attention, 1e-7, 1.0 - 1e-7) * _mask_weights(mask, attention)
            weights = weights / ops.maximum(ops.sum(weights, axis=1, keepdims=True), 1e-12)
        return ops.sum(values * weights, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        if self.normalization != "softmax":  # absent when the default: heads saved before it load alike
            config["normalization"] = self.normalization
        return config


@keras.saving.register_keras_serializable(package="tagger")
class Ensemble(keras.layers.Layer):
    """Independent copies of a head: each trains on its own slice of every batch, all are averaged to predict.

    In training, a batch of B samples is cut into ``len(members)`` consecutive
    slices and member i sees only slice i, so the members learn independently
    (a jointly trained average would let them co-adapt) at the compute cost of
    one head on the whole batch. At inference every member sees every sample
    and the output is the mean of their outputs.

    Parameters
    ----------
    members : list of keras.Model
        Heads with the same inputs and output shape.
    weights : list of float, optional
        One per member, summing to 1: the weighted mean at inference (a cross-family
        ensemble, :mod:`tagger.training.ensemble`); the plain mean when None.

    Call arguments: ``inputs``, the members' inputs (e.g. ``[x, mask]``).
    Output: (batch, n_outputs). Training batches need at least ``len(members)``
    samples (``tagger train`` asks for a multiple); the last member takes any remainder.
    """

    def __init__(self, members, weights=None, **kwargs):
        super().__init__(**kwargs)
        self.members = [keras.saving.deserialize_keras_object(m) if isinstance(m, dict) else m for m in members]
        self.weights_of_members = None if weights is None else [float(w) for w in weights]
        if self.weights_of_members is not None and len(self.weights_of_members) != len(self.members):
            raise ValueError(f"weights={weights} must give one weight per member ({len(self.members)})")

    def call(self, inputs, training=None):
        if not training:
            outputs = ops.stack([member(inputs, training=False) for member in self.members], axis=1)
            if self.weights_of_members is None:
                return ops.mean(outputs, axis=1)
            w = ops.convert_to_tensor(self.weights_of_members, dtype=outputs.dtype)
            return ops.sum(outputs * w[None, :, None], axis=1)
        n, batch = len(self.members), ops.shape(inputs[0])[0]
        edges = [i * (batch // n) for i in range(n)] + [batch]
        return ops.concatenate(
            [
                member([t[edges[i] : edges[i + 1]] for t in inputs], training=True)
                for i, member in enumerate(self.members)
            ],
            axis=0,
        )

    def compute_output_shape(self, input_shape):
        return self.members[0].compute_output_shape(input_shape)

    def get_config(self):
        config = {**super().get_config(), "members": [keras.saving.serialize_keras_object(m) for m in self.members]}
        if self.weights_of_members is not None:  # absent when equal: heads saved before weights existed load alike
            config["weights"] = self.weights_of_members
        return config


@keras.saving.register_keras_serializable(package="tagger")
class PatchFrames(keras.layers.Layer):
    """Log-mel patches to one spectrogram image: the CNN heads' input.

    Call arguments: ``[x, mask]``, x (batch, time, frames, bands) and mask
    (batch, time). Output: ``[image, frame_mask]``, image (batch, time *
    frames, bands, 1) with padded patches zeroed, frame_mask (batch, time * frames).
    """

    def call(self, inputs):
        x, mask = inputs
        frames, bands = x.shape[2], x.shape[3]
        image = ops.reshape(x, (ops.shape(x)[0], -1, bands, 1))
        frame_mask = ops.repeat(ops.cast(mask, x.dtype), frames, axis=1)
        return [image * frame_mask[:, :, None, None], frame_mask]

    def compute_output_shape(self, input_shape):
        shape, _ = input_shape
        steps = None if shape[1] is None else shape[1] * shape[2]
        return [(shape[0], steps, shape[3], 1), (shape[0], steps)]


@keras.saving.register_keras_serializable(package="tagger")
class SequenceMask(keras.layers.Layer):
    """A frame mask pooled like the frames were: (batch, n) -> (batch, n // factor) boolean (any frame real)."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, frame_mask):
        pooled = ops.reshape(frame_mask, (ops.shape(frame_mask)[0], -1, self.factor))
        return ops.max(pooled, axis=-1) > 0

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None if input_shape[1] is None else input_shape[1] // self.factor)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
