"""VGGish log-mel frontend in pure NumPy: waveform -> patches of 96 x 64.

Numerically follows Google's ``mel_features.py`` and
``vggish_input.waveform_to_examples``: periodic Hann window of 400 samples,
hop 160, 512-point FFT magnitude, 64 HTK-mel triangles (built in mel space,
DC bin zeroed) from 125 to 7500 Hz, ``log(mel + 0.01)``, complete frames only,
patches of 96 frames. Computed in float64 as the reference, returned as float32.
"""

import functools
import os
import warnings

import numpy as np

from ...exceptions import AudioError, ParameterError, TaggerWarning
from ..audio import to_mono
from ..decode import blocks, describe_error
from . import params

__all__ = [
    "periodic_hann",
    "hertz_to_mel",
    "mel_matrix",
    "log_mel_spectrogram",
    "Patcher",
    "waveform_to_patches",
    "n_patches",
    "patch_shape",
    "decode_messages",
    "decode_options",
]

SHORT_POLICIES = ("pad", "skip")
#: what a :class:`Patcher` emits per patch: its log-mel (this module's frontend, 96 x 64), or its 15,600 samples
#: for a frontend on the network's device (:mod:`.device_frontend`)
OUTPUTS = ("log_mel", "audio")


def periodic_hann(window_length):
    """Periodic Hann window, shape (window_length,), float64."""
    return 0.5 - 0.5 * np.cos(2 * np.pi / window_length * np.arange(window_length))


def hertz_to_mel(hz):
    """HTK mel scale: ``1127 * ln(1 + hz / 700)``."""
    return params.MEL_HIGH_FREQUENCY_Q * np.log(1.0 + np.asarray(hz) / params.MEL_BREAK_FREQUENCY_HZ)


@functools.lru_cache(maxsize=None)
def mel_matrix(
    num_mel_bins=params.NUM_MEL_BINS,
    num_spectrogram_bins=params.FFT_LENGTH // 2 + 1,
    sample_rate=params.SAMPLE_RATE,
    lower_edge_hz=params.MEL_MIN_HZ,
    upper_edge_hz=params.MEL_MAX_HZ,
):
    """Mel filterbank with triangles built in mel space, DC row zeroed.

    Returns
    -------
    np.ndarray, shape (num_spectrogram_bins, num_mel_bins), float64, read-only
    """
    nyquist = sample_rate / 2.0
    if not 0.0 <= lower_edge_hz < upper_edge_hz <= nyquist:
        raise ParameterError(
            f"mel edges must satisfy 0 <= lower ({lower_edge_hz}) < upper ({upper_edge_hz}) <= nyquist ({nyquist})"
        )
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist, num_spectrogram_bins))[:, None]
    edges = np.linspace(hertz_to_mel(lower_edge_hz), hertz_to_mel(upper_edge_hz), num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    weights = np.maximum(0.0, np.minimum((bins_mel - lower) / (center - lower), (upper - bins_mel) / (upper - center)))
    weights[0, :] = 0.0
    weights.setflags(write=False)
    return weights


def log_mel_spectrogram(y):
    """Log-mel spectrogram of complete frames of a 16 kHz waveform.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono waveform at 16 kHz; ``n >= 400``.

    Returns
    -------
    np.ndarray, shape (1 + (n - 400) // 160, 64), float64
    """
    y = np.asarray(y, dtype=np.float64)
    if len(y) < params.STFT_WINDOW_SAMPLES:
        raise ParameterError(f"len(y)={len(y)} must be >= {params.STFT_WINDOW_SAMPLES} samples")
    frames = np.lib.stride_tricks.sliding_window_view(y, params.STFT_WINDOW_SAMPLES)[:: params.STFT_HOP_SAMPLES]
    spectrum = np.abs(np.fft.rfft(frames * periodic_hann(params.STFT_WINDOW_SAMPLES), params.FFT_LENGTH))
    return np.log(spectrum @ mel_matrix() + params.LOG_OFFSET)


def log_mel_of_samples(patches):
    """The reference frontend's log-mel patches of patches given as their samples (a :class:`Patcher`'s
    ``output='audio'``).

    A patch's 96 frames are made of its own 15,600 samples alone, so these are the patches the reference frontend
    makes of the whole waveform.

    Parameters
    ----------
    patches : np.ndarray, shape (T, 15600), float32

    Returns
    -------
    np.ndarray, shape (T, 96, 64), float32
    """
    patches = np.asarray(patches, dtype=np.float32)
    if patches.ndim != 2 or patches.shape[1] != params.PATCH_SAMPLES:
        raise ParameterError(f"patches of shape {patches.shape}: expected (T, {params.PATCH_SAMPLES}) samples")
    out = np.zeros((len(patches), params.NUM_FRAMES, params.NUM_MEL_BINS), np.float32)
    for i, samples in enumerate(patches):
        out[i] = log_mel_spectrogram(samples)
    return out


def n_patches(n_samples, *, hop_seconds=params.EXAMPLE_HOP_SECONDS):
    """Number of complete patches in ``n_samples`` samples at 16 kHz."""
    if n_samples < params.PATCH_SAMPLES:
        return 0
    hop = params.hop_frames(hop_seconds) * params.STFT_HOP_SAMPLES
    return 1 + (n_samples - params.PATCH_SAMPLES) // hop


def patch_shape(output="log_mel"):
    """One patch as a :class:`Patcher` with this ``output`` emits it: (96, 64) log-mel, or ``'audio'``: (15600,)."""
    if output not in OUTPUTS:
        raise ParameterError(f"output={output!r} must be one of {OUTPUTS}")
    return (params.PATCH_SAMPLES,) if output == "audio" else (params.NUM_FRAMES, params.NUM_MEL_BINS)


class Patcher:
    """Turn a 16 kHz waveform fed in blocks into log-mel patches.

    Patch ``i`` depends only on samples ``[i * hop, i * hop + 15600)``, so
    feeding a waveform in any blocks gives exactly the patches of the whole.

    Parameters
    ----------
    hop_seconds : float
        Patch hop (0.96 s: no overlap; 0.48 s: 50 % overlap).
    short_policy : {'pad', 'skip'}
        What :meth:`finish` does with audio shorter than one patch: zero-pad
        it to one patch with a :class:`TaggerWarning`, or raise
        :class:`AudioError`.
    name : str
        The source's name, used in warnings and errors.
    output : {'log_mel', 'audio'}
        Each patch as its log-mel (96, 64), or as the 15,600 samples it is computed from (the device frontend's
        input: :func:`tagger.embedding.vggish.device_frontend.log_mel` of them is the patch).
    """

    def __init__(self, *, hop_seconds=params.EXAMPLE_HOP_SECONDS, short_policy="pad", name="<array>", output="log_mel"):
        if short_policy not in SHORT_POLICIES:
            raise ParameterError(f"short_policy={short_policy!r} must be one of {SHORT_POLICIES}")
        self._shape = patch_shape(output)  # refuses an unknown output
        self.output = output
        self.hop_frames = params.hop_frames(hop_seconds)
        self.hop = self.hop_frames * params.STFT_HOP_SAMPLES
        self.short_policy = short_policy
        self.name = name
        self._buf = np.zeros(0, dtype=np.float32)
        self._skip = 0  # samples still to drop (when hop > patch length)
        self.n_samples = 0
        self.n_emitted = 0
        self.peak = 0.0

    def _empty(self):
        return np.zeros((0, *self._shape), np.float32), np.zeros(0)

    def feed(self, block):
        """Add samples; return the patches now complete.

        Parameters
        ----------
        block : np.ndarray, shape (n,), float32

        Returns
        -------
        patches : np.ndarray, shape (T, 96, 64), float32
        timestamps : np.ndarray, shape (T,), float64
            Patch start times in seconds.
        """
        block = np.asarray(block, dtype=np.float32)
        self.n_samples += len(block)
        if len(block):
            self.peak = max(self.peak, float(np.max(np.abs(block))))
        if self._skip:
            dropped = min(self._skip, len(block))
            block, self._skip = block[dropped:], self._skip - dropped
        self._buf = np.concatenate([self._buf, block]) if len(self._buf) else block
        n = n_patches(len(self._buf), hop_seconds=self.hop_frames * params.STFT_HOP_SECONDS)
        if n == 0:
            return self._empty()
        used = (n - 1) * self.hop + params.PATCH_SAMPLES
        if self.output == "audio":
            patches = np.stack([self._buf[i * self.hop : i * self.hop + params.PATCH_SAMPLES] for i in range(n)])
        else:
            log_mel = log_mel_spectrogram(self._buf[:used])
            starts = np.arange(n) * self.hop_frames
            patches = np.stack([log_mel[s : s + params.NUM_FRAMES] for s in starts]).astype(np.float32)
        times = (self.n_emitted + np.arange(n)) * self.hop / params.SAMPLE_RATE
        consumed = n * self.hop
        self._skip = max(0, consumed - len(self._buf))
        self._buf = self._buf[consumed:].copy()
        self.n_emitted += n
        return patches, times

    def finish(self):
        """Apply the short-clip policy and the silence check at the end of the stream.

        Returns
        -------
        patches, timestamps
            One zero-padded patch for a short clip under ``'pad'``, else empty.

        Raises
        ------
        AudioError
            No samples at all, or a short clip under ``short_policy='skip'``.
        """
        if self.n_samples == 0:
            raise AudioError(f"{self.name}: no audio samples")
        if self.peak == 0.0:
            warnings.warn(f"{self.name}: audio is silent", TaggerWarning, stacklevel=2)
        if self.n_emitted:
            return self._empty()
        seconds = self.n_samples / params.SAMPLE_RATE
        if self.short_policy == "skip":
            raise AudioError(
                f"{self.name}: {seconds:.3f} s is shorter than one {params.EXAMPLE_WINDOW_SECONDS} s"
                " patch (short_policy='skip')"
            )
        warnings.warn(
            f"{self.name}: {seconds:.3f} s is shorter than one {params.EXAMPLE_WINDOW_SECONDS} s patch; zero-padded",
            TaggerWarning,
            stacklevel=2,
        )
        padded = np.zeros(params.PATCH_SAMPLES, np.float32)
        padded[: len(self._buf)] = self._buf[: params.PATCH_SAMPLES]
        self._buf = padded
        return self.feed(np.zeros(0, np.float32))


def waveform_to_patches(
    y, sr=params.SAMPLE_RATE, *, hop_seconds=params.EXAMPLE_HOP_SECONDS, short_policy="pad", output="log_mel"
):
    """Log-mel patches of a whole waveform (``vggish_input.waveform_to_examples``).

    Parameters
    ----------
    y : np.ndarray, shape (n,) or (n, channels)
        Waveform; downmixed and resampled to 16 kHz when needed.
    sr : int
        Sample rate of ``y`` in Hz.
    hop_seconds : float
        Patch hop in seconds.
    short_policy : {'pad', 'skip'}
        See :class:`Patcher`.
    output : {'log_mel', 'audio'}
        See :class:`Patcher`.

    Returns
    -------
    patches : np.ndarray, shape (T, 96, 64) (``'audio'``: (T, 15600)), float32
    timestamps : np.ndarray, shape (T,), float64
        Patch start times in seconds.
    """
    patcher = Patcher(hop_seconds=hop_seconds, short_policy=short_policy, output=output)
    patches, times = patcher.feed(to_mono(y, sr))
    tail_p, tail_t = patcher.finish()
    if len(tail_p):
        return tail_p, tail_t
    return patches, times


def decode_options(*, hop_seconds, short_policy, chunk_patches=32, output="log_mel"):
    """The settings of :func:`decode_messages` as a decode pool takes them (``chunk_patches``: patches per message
    from a worker; ``output``: what a patch is, see :class:`Patcher`)."""
    return dict(hop_seconds=hop_seconds, short_policy=short_policy, chunk_patches=chunk_patches, output=output)


def decode_messages(index, path, *, hop_seconds, short_policy, chunk_patches, output="log_mel"):
    """Yield the messages describing one file's patches (``path`` may be an :class:`tagger.embedding.augment.Augmented` task).

    Yields
    ------
    tuple
        ``("patches", index, patches (n, 96, 64) float32 (output "audio": (n, 15600)), timestamps (n,))`` zero or more
        times, then ``("done", index, duration_s, [warning texts])`` or
        ``("error", index, reason)``.
    """
    pending_p, pending_t, n_pending = [], [], 0
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            patcher = Patcher(hop_seconds=hop_seconds, short_policy=short_policy, name=os.fspath(path), output=output)

            def emit(p, t):
                nonlocal n_pending
                pending_p.append(p)
                pending_t.append(t)
                n_pending += len(p)

            for block in blocks(path, params.SAMPLE_RATE):
                emit(*patcher.feed(block))
                if n_pending >= chunk_patches:
                    yield ("patches", index, np.concatenate(pending_p), np.concatenate(pending_t))
                    pending_p, pending_t, n_pending = [], [], 0
            emit(*patcher.finish())
        if n_pending:
            yield ("patches", index, np.concatenate(pending_p), np.concatenate(pending_t))
        texts = [str(w.message) for w in caught]
        yield ("done", index, patcher.n_samples / params.SAMPLE_RATE, texts)
    except Exception as exc:  # noqa: BLE001 - any failure of one file is reported, never fatal
        yield ("error", index, describe_error(exc))
