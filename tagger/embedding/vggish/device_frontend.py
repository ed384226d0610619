"""VGGish's log-mel frontend in ``keras.ops``: 16 kHz audio -> 96 x 64 patches on the backend's device.

The reference frontend (:mod:`.frontend`) computes in float64 NumPy in the decode workers; this one computes in
float32 wherever the network runs (a GPU, or the CPU's own threads), in the network's batch. The figures are the
reference's (:mod:`.params`), and so are its two tables, cast to float32: the periodic Hann window
(:func:`.frontend.periodic_hann`) and the HTK mel matrix (:func:`.frontend.mel_matrix`). Two choices differ from
what a first try with ``keras.ops.stft`` gives:

- frames are gathered explicitly (400 samples every 160) and zero-padded to the 512-point FFT: ``keras.ops.stft``
  with a 400-sample window in a 512-point frame centres the window, so each frame would start 56 samples late
  (and one would be lost);
- the mel product runs at the highest float32 precision on JAX (its default on a GPU is TF32, 10 mantissa bits).

It stays float32 inside a bfloat16 or float16 network (``stft``/``rfft`` take only float32 or float64). Its output
is its own frontend kind in the provenance (:func:`frontend_params`): entries of the two frontends never serve
each other, since float32 rounding moves a log-mel value by up to about 1e-3 near a full-scale tone.
"""

import functools

import numpy as np

from ...exceptions import ParameterError
from . import params
from .frontend import mel_matrix, periodic_hann

__all__ = ["KIND", "FRONTENDS", "default_kind", "frontend_params", "log_mel", "patches", "n_frames", "with_frontend"]

#: the ``frontend_kind`` this frontend's entries record (the reference frontend's entries record none)
KIND = "device"
#: the two frontends an embedder can run: the reference (NumPy, in the decode workers) or this one
FRONTENDS = ("reference", KIND)


def default_kind(dtype):
    """The frontend an embedder runs when none is named: this one where the network computes in another precision
    than float32, the reference frontend where it computes in float32.

    The rule follows the precision alone, so it is as deterministic as the precision (``auto`` reads the CPU's
    flags and the backend; :func:`tagger.backend.auto_dtype`): float32 runs, their outputs and caches stay the
    reference frontend's; a bfloat16 CPU or a GPU computes the log-mel in the network's process, in its batch,
    and its decode workers only read and resample.

    Parameters
    ----------
    dtype : str
        The network's compute precision, resolved (``'float32'``, ``'bfloat16'``, ``'float16'``).

    Returns
    -------
    {'reference', 'device'}
    """
    return "reference" if dtype == "float32" else KIND


def frontend_params(*, hop_seconds=params.EXAMPLE_HOP_SECONDS):
    """The reference frontend's settings (:func:`.params.frontend_params`) and ``frontend_kind: 'device'``."""
    return {**params.frontend_params(hop_seconds=hop_seconds), "frontend_kind": KIND}


def n_frames(n_samples):
    """Complete STFT frames in ``n_samples`` samples (0 below one window)."""
    if n_samples < params.STFT_WINDOW_SAMPLES:
        return 0
    return 1 + (n_samples - params.STFT_WINDOW_SAMPLES) // params.STFT_HOP_SAMPLES


@functools.lru_cache(maxsize=None)
def _tables():
    """(window (400,), mel matrix (257, 64)) as float32, read-only."""
    window = periodic_hann(params.STFT_WINDOW_SAMPLES).astype(np.float32)
    mel = np.asarray(mel_matrix(), np.float32)
    window.setflags(write=False)
    mel.setflags(write=False)
    return window, mel


def _mel_product(magnitude, mel):
    import keras

    if keras.backend.backend() == "jax":  # JAX's default float32 matmul on a GPU is TF32: ask for full float32
        import jax

        return jax.numpy.matmul(magnitude, mel, precision=jax.lax.Precision.HIGHEST)
    return keras.ops.matmul(magnitude, keras.ops.convert_to_tensor(mel))


def _frames(audio, frames):
    """The first ``frames`` STFT frames of a batch of waveforms, shape (batch, frames, 400): frame ``i`` is samples
    ``[160 i, 160 i + 400)``.

    Cut without a gather: the audio is reshaped into 160-sample blocks, and a frame is blocks ``i``, ``i + 1`` and
    the first 80 samples of ``i + 2``, so three shifted slices concatenated give every frame (a gather of each
    sample took 2.6 ms of the 5.9 a 30-s clip's log-mel took on TensorFlow on a CPU; the values are the same).
    """
    from keras import ops

    hop, window = params.STFT_HOP_SAMPLES, params.STFT_WINDOW_SAMPLES
    spans = -(-window // hop)  # blocks one frame reaches into: 3
    n_blocks = frames + spans - 1
    need, have = n_blocks * hop, int(audio.shape[-1])
    # past the last frame's end only the unused tail of the last block: cut there, or pad it with zeros
    audio = audio[:, :need] if have >= need else ops.pad(audio, [[0, 0], [0, need - have]])
    blocks = ops.reshape(audio, (-1, n_blocks, hop))
    parts = [blocks[:, j : j + frames, : min(hop, window - j * hop)] for j in range(spans)]
    return ops.concatenate(parts, axis=-1)


def log_mel(audio):
    """Log-mel frames of a batch of 16 kHz waveforms, complete frames only.

    Parameters
    ----------
    audio : array or tensor, shape (batch, samples), float32
        At least 400 samples each.

    Returns
    -------
    tensor, shape (batch, 1 + (samples - 400) // 160, 64), float32
        ``log(|rfft(hann * frame, 512)| @ mel + 0.01)``, on the backend's device.
    """
    from keras import ops

    audio = ops.convert_to_tensor(audio, dtype="float32")
    frames = n_frames(int(audio.shape[-1]))
    if frames == 0:
        raise ParameterError(f"audio of {audio.shape[-1]} samples: at least {params.STFT_WINDOW_SAMPLES} are needed")
    window, mel = _tables()
    framed = _frames(audio, frames) * ops.convert_to_tensor(window)
    framed = ops.pad(framed, [[0, 0], [0, 0], [0, params.FFT_LENGTH - params.STFT_WINDOW_SAMPLES]])
    real, imag = ops.rfft(framed)
    magnitude = ops.sqrt(real * real + imag * imag)  # (batch, frames, 257)
    return ops.log(_mel_product(magnitude, mel) + params.LOG_OFFSET)


def patches(audio, *, hop_seconds=params.EXAMPLE_HOP_SECONDS):
    """96 x 64 log-mel patches of a batch of 16 kHz waveforms: patch ``i`` starts at frame ``i * hop``.

    Parameters
    ----------
    audio : array or tensor, shape (batch, samples), float32
        At least one patch (15,600 samples) each.
    hop_seconds : float
        Patch hop (a multiple of 10 ms).

    Returns
    -------
    tensor, shape (batch, n_patches, 96, 64), float32
        The patches :func:`.frontend.waveform_to_patches` makes, within float32 rounding.
    """
    from keras import ops

    frames = log_mel(audio)
    n = int(frames.shape[1])
    hop = params.hop_frames(hop_seconds)
    count = 0 if n < params.NUM_FRAMES else 1 + (n - params.NUM_FRAMES) // hop
    if count == 0:
        raise ParameterError(f"{n} frames: at least one patch ({params.NUM_FRAMES} frames, 15,600 samples) is needed")
    index = np.arange(count, dtype=np.int32)[:, None] * hop + np.arange(params.NUM_FRAMES, dtype=np.int32)[None, :]
    return ops.take(frames, ops.convert_to_tensor(index), axis=1)


@functools.lru_cache(maxsize=None)
def _layer_class():
    import keras

    class DeviceLogMel(keras.layers.Layer):
        """(batch, samples) 16 kHz audio -> (batch, frames, 64) log-mel, in float32 whatever the network's precision."""

        def __init__(self, **kwargs):
            super().__init__(dtype="float32", **kwargs)

        def call(self, audio):
            return log_mel(audio)

        def compute_output_shape(self, input_shape):
            return (input_shape[0], n_frames(int(input_shape[1])), params.NUM_MEL_BINS)

    return DeviceLogMel


def with_frontend(net):
    """A network over 96 x 64 patches as one over the 15,600 samples of each patch: this frontend, then ``net``.

    Parameters
    ----------
    net : keras.Model
        ``(n, 96, 64) -> (n, ...)``, in any precision (the frontend stays float32).

    Returns
    -------
    keras.Model
        ``(n, 15600) float32 -> (n, ...)``; its weights are ``net``'s (shared, not copied).
    """
    import keras

    audio = keras.Input((params.PATCH_SAMPLES,), dtype="float32", name="patch_audio")
    return keras.Model(audio, net(_layer_class()(name="device_log_mel")(audio)), name=f"{net.name}_on_audio")
