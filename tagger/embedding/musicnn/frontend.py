"""musicnn's frontend, exactly: 16 kHz audio -> log-compressed mel frames -> 187-frame patches (pure NumPy + librosa).

The mel is librosa's (:data:`~.params.FFT_SIZE` ...), rounded to float16 as musicnn stored it, then compressed
in float32; another mel implementation (a device frontend included) flips float16 roundings and moves the
networks' outputs by 1e-4 to 2.5e-4, so parity with musicnn needs this one. See :mod:`.params` for where every
figure comes from.
"""

import os
import warnings

import numpy as np

from ...exceptions import AudioError, ParameterError
from ..audio import to_mono
from ..decode import describe_error, load_source
from ..kernels import import_librosa
from . import params

__all__ = ["log_mel", "patches_of", "waveform_to_patches", "decode_messages"]


def log_mel(y):
    """musicnn's log-compressed mel spectrogram of a 16 kHz waveform.

    Parameters
    ----------
    y : np.ndarray, shape (n,), float32
        Mono samples at 16 kHz, n >= 1.

    Returns
    -------
    np.ndarray, shape (frames, 96), float32
        ``log10(1 + 10000 * float16(mel))``, frames = 1 + n // 256.
    """
    librosa = import_librosa()
    mel = librosa.feature.melspectrogram(
        y=np.asarray(y, np.float32),
        sr=params.SAMPLE_RATE,
        n_fft=params.FFT_SIZE,
        hop_length=params.FFT_HOP,
        n_mels=params.N_MELS,
        power=params.MEL_POWER,
        htk=params.MEL_HTK,
        norm=params.MEL_NORM,
        center=params.CENTER,
        pad_mode=params.PAD_MODE,
    ).T
    mel = mel.astype(params.STORED_DTYPE).astype(np.float32)
    return np.log10(np.float32(params.LOG_C) * mel + np.float32(1))


def patches_of(frames, *, short_policy="pad"):
    """Cut log-mel frames into musicnn's patches: 187 frames, hop 187, the incomplete tail dropped.

    Parameters
    ----------
    frames : np.ndarray, shape (F, 96)
    short_policy : {'pad', 'skip'}
        F < 187: ``'pad'`` repeats the frames until they fill one patch (musicnn's training, ``repeat-pad``);
        ``'skip'`` gives no patch.

    Returns
    -------
    patches : np.ndarray, shape (T, 187, 96), float32
    timestamps : np.ndarray, shape (T,), float64
        Patch start times in seconds (a hop of 2.992 s).
    """
    if short_policy not in params.SHORT_POLICIES:
        raise ParameterError(f"short_policy={short_policy!r} must be one of {params.SHORT_POLICIES}")
    n = params.NUM_FRAMES
    if len(frames) < n:
        if short_policy == "skip" or len(frames) == 0:
            return np.zeros((0, *params.PATCH_SHAPE), np.float32), np.zeros(0)
        frames = np.tile(frames, (-(-n // len(frames)), 1))[:n]
    starts = np.arange(0, len(frames) - n + 1, params.PATCH_HOP_FRAMES)
    patches = np.stack([frames[s : s + n] for s in starts]).astype(np.float32, copy=False)
    return patches, starts * (params.FFT_HOP / params.SAMPLE_RATE)


def waveform_to_patches(y, sr=params.SAMPLE_RATE, *, short_policy="pad"):
    """musicnn's patches of a waveform (any rate and channels; downmixed and resampled to 16 kHz).

    Returns
    -------
    patches : np.ndarray, shape (T, 187, 96), float32
    timestamps : np.ndarray, shape (T,), float64
    """
    y = to_mono(y, sr, sample_rate=params.SAMPLE_RATE)
    if len(y) == 0:
        raise AudioError("audio: no samples")
    return patches_of(log_mel(y), short_policy=short_policy)


def decode_messages(index, path, *, short_policy, chunk_patches=None, hop_seconds=None):
    """The decode workers' job (:func:`tagger.embedding.pipeline.iter_embeddings`, and the Beam pipeline's
    ``Decode``, which also passes a ``hop_seconds`` and a ``chunk_patches``): one file's patches, in chunks of
    ``chunk_patches`` (all at once without one); the hop is musicnn's own.

    The whole file is decoded (the centred STFT and the float16 rounding are musicnn's on whole clips); files
    longer than :data:`tagger.embedding.params.WHOLE_FILE_MAX_SECONDS` are refused.

    Yields
    ------
    tuple
        ``("patches", index, patches (T, 187, 96) float32, timestamps (T,))``, then ``("done", index,
        duration_s, [warning texts])``; or ``("error", index, reason)``.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = load_source(path, params.SAMPLE_RATE)
            if len(y) == 0:
                raise AudioError(f"{os.fspath(path)}: no audio samples")
            patches, times = patches_of(log_mel(y), short_policy=short_policy)
        step = chunk_patches or max(1, len(patches))
        for start in range(0, len(patches), step):
            yield ("patches", index, patches[start : start + step], times[start : start + step])
        yield ("done", index, len(y) / params.SAMPLE_RATE, [str(w.message) for w in caught])
    except Exception as exc:  # noqa: BLE001 - any failure of one file is reported, never fatal
        yield ("error", index, describe_error(exc))
