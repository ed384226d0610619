"""Audio decoding: any file libsndfile reads, or an array, to mono float32 at a model's rate (16 kHz, VGGish's, by default).

Files are decoded in blocks and resampled with a streaming soxr resampler,
so a two-hour recording never sits in memory whole. No TensorFlow here.
"""

import contextlib
import os
import re

import numpy as np
import soundfile as sf
import soxr

from ..console import filtered_stderr
from ..exceptions import AudioError, ParameterError
from . import registry

__all__ = ["iter_blocks", "load", "to_mono", "info", "default_rate"]

#: decode block length used when streaming a file, in seconds of source audio
BLOCK_SECONDS = 30.0


#: what libmpg123 prints on file descriptor 2 while it reads a damaged or non-MP3 file ("Note: Illegal
#: Audio-MPEG-Header ...", "Note: Trying to resync...", "[src/libmpg123/parse.c:...] error: Giving up
#: resync ..."): chatter, since the error (if any) is raised with the file's name
_DECODER_CHATTER = re.compile(r"^((Note|Warning): |\[src/libmpg123/)")


def _open(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a folder, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        with filtered_stderr(_DECODER_CHATTER):
            return sf.SoundFile(os.fsencode(path))  # bytes: a name that is not valid UTF-8 opens too
    except sf.LibsndfileError as exc:
        # libsndfile's text for a file no decoder recognises is "Format not recognised", or, when its MP3
        # decoder gave up on it, "File does not exist or is not a regular file (possibly a pipe?)"
        reason = "format not recognised" if exc.code in (1, 7) else exc.error_string
        raise AudioError(f"{path}: not a readable audio file ({reason})") from exc
    except (RuntimeError, TypeError, OSError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from exc


def info(path):
    """Return ``(sample_rate, channels, duration_s)`` from a file's header.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    tuple of (int, int, float)
    """
    with _open(path) as f:
        return f.samplerate, f.channels, f.frames / float(f.samplerate)


def default_rate():
    """The default model's sample rate in Hz (VGGish's 16 kHz): what an unset ``sample_rate`` means here."""
    return registry.model(registry.models()[0]).sample_rate


def _downmix(block):
    return block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]


def iter_blocks(path, *, block_seconds=BLOCK_SECONDS, sample_rate=None):
    """Decode a file block by block to mono float32 at 16 kHz (or ``sample_rate``).

    Parameters
    ----------
    path : str or os.PathLike
        Any file libsndfile reads (wav, flac, ogg, mp3, au, ...).
    block_seconds : float
        Length of one decoded block in seconds of source audio.
    sample_rate : int
        Output rate in Hz (VGGish's 16 kHz by default; the handcrafted
        features use 22,050 Hz).

    Yields
    ------
    np.ndarray, shape (n,), float32
        Consecutive mono blocks; their concatenation is the whole file.

    Raises
    ------
    AudioError
        If the file is missing, empty, unreadable or holds non-finite samples.
    """
    if block_seconds <= 0:
        raise ParameterError(f"block_seconds={block_seconds!r} must be > 0")
    sample_rate = sample_rate or default_rate()
    with _open(path) as f:
        sr = f.samplerate
        mpeg = f.format in ("MP3", "MPEG")  # libmpg123 decodes it
        stream = None
        if sr != sample_rate:
            stream = soxr.ResampleStream(sr, sample_rate, 1, dtype="float32", quality="HQ")
        n = max(1, int(block_seconds * sr))
        while True:
            try:
                with filtered_stderr(_DECODER_CHATTER) if mpeg else contextlib.nullcontext():  # only libmpg123 chatters
                    block = f.read(n, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(f"{os.fspath(path)}: decoding failed ({exc})") from exc
            last = len(block) < n
            mono = _downmix(block)
            if stream is not None:
                mono = stream.resample_chunk(mono, last=last)
            if not np.all(np.isfinite(mono)):
                raise AudioError(f"{os.fspath(path)}: audio holds NaN or infinite samples")
            if len(mono):
                yield np.ascontiguousarray(mono, dtype=np.float32)
            if last:
                break


def to_mono(y, sr, *, sample_rate=None):
    """Downmix and resample an array to mono float32 at ``sample_rate`` (16 kHz, VGGish's rate, by default).

    Parameters
    ----------
    y : np.ndarray, shape (n,) or (n, channels) or (channels, n)
        Samples; float in [-1, 1] or integer PCM (scaled by the type's range).
        A 2-D array is read as (n_samples, n_channels), soundfile's layout,
        unless its first axis is the shorter one (librosa's layout).
    sr : int
        Sample rate of ``y`` in Hz.

    Returns
    -------
    np.ndarray, shape (m,), float32
    """
    y = np.asarray(y)
    sample_rate = sample_rate or default_rate()
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ParameterError(f"sr={sr!r} must be a positive integer sample rate")
    if y.ndim not in (1, 2):
        raise AudioError(f"audio array must be 1-D or 2-D, got shape {y.shape}")
    if np.issubdtype(y.dtype, np.integer):
        y = y.astype(np.float32) / float(np.iinfo(y.dtype).max + 1)
    elif not np.issubdtype(y.dtype, np.floating):
        raise AudioError(f"audio array must hold numbers, got dtype {y.dtype}")
    y = y.astype(np.float32, copy=False)
    if y.ndim == 2:
        if y.shape[0] < y.shape[1]:
            y = y.T
        y = _downmix(y)
    if not np.all(np.isfinite(y)):
        raise AudioError("audio array holds NaN or infinite samples")
    if sr != sample_rate and len(y):
        y = soxr.resample(y, sr, sample_rate, quality="HQ")
    return np.ascontiguousarray(y, dtype=np.float32)


def load(path, *, sample_rate=None):
    """Decode a whole file to mono float32 at 16 kHz (or ``sample_rate``).

    Parameters
    ----------
    path : str or os.PathLike
    sample_rate : int
        Output rate in Hz.

    Returns
    -------
    np.ndarray, shape (n,), float32
    """
    blocks = list(iter_blocks(path, sample_rate=sample_rate))
    if not blocks:
        raise AudioError(f"{os.fspath(path)}: no audio samples")
    return np.concatenate(blocks)
