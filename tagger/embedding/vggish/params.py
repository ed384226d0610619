"""Every VGGish constant in one place (after Google's ``vggish_params.py``).

Nothing here computes anything; the frontend, the network and the postprocessor
read these names so one edit changes them everywhere.
"""

from ...exceptions import ParameterError

# Audio
SAMPLE_RATE = 16000  # Hz, the rate VGGish was trained at

# STFT
STFT_WINDOW_SECONDS = 0.025
STFT_HOP_SECONDS = 0.010
STFT_WINDOW_SAMPLES = 400  # round(SAMPLE_RATE * STFT_WINDOW_SECONDS)
STFT_HOP_SAMPLES = 160  # round(SAMPLE_RATE * STFT_HOP_SECONDS)
FFT_LENGTH = 512  # next power of two above the window

# Mel filterbank (HTK mel scale, triangles in mel space)
NUM_MEL_BINS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
MEL_BREAK_FREQUENCY_HZ = 700.0
MEL_HIGH_FREQUENCY_Q = 1127.0
LOG_OFFSET = 0.01  # log(mel + LOG_OFFSET) avoids log(0)

# Patches ("examples" in Google's code)
NUM_FRAMES = 96  # frames per patch: 0.96 s
EXAMPLE_WINDOW_SECONDS = 0.96
EXAMPLE_HOP_SECONDS = 0.96  # default patch hop; 0.48 gives 50 % overlap
# samples needed for one complete patch: (NUM_FRAMES - 1) * hop + window = 15600
PATCH_SAMPLES = (NUM_FRAMES - 1) * STFT_HOP_SAMPLES + STFT_WINDOW_SAMPLES

# Network
EMBEDDING_SIZE = 128
NUM_BANDS = NUM_MEL_BINS
PATCH_SHAPE = (NUM_FRAMES, NUM_BANDS)  # one patch, the network's input

# Postprocessor (PCA whitening + 8-bit quantisation)
QUANTIZE_MIN_VAL = -2.0
QUANTIZE_MAX_VAL = +2.0
PCA_MEANS_NAME = "pca_means"
PCA_EIGEN_VECTORS_NAME = "pca_eigen_vectors"

# Weights
VGGISH_HUB_HANDLE = "https://tfhub.dev/google/vggish/1"
WEIGHTS_ENV = "TAGGER_VGGISH_WEIGHTS"  # local SavedModel dir, checkpoint, or hub handle
PCA_PARAMS_ENV = "TAGGER_VGGISH_PCA"  # local vggish_pca_params.npz
PCA_PARAMS_URL = "https://storage.googleapis.com/audioset/vggish_pca_params.npz"
CHECKPOINT_URL = "https://storage.googleapis.com/audioset/vggish_model.ckpt"


def frontend_params(*, hop_seconds=EXAMPLE_HOP_SECONDS):
    """Return the frontend settings that determine a patch, as a plain dict.

    Stored with every cache entry and model bundle so stale data is detected.

    Parameters
    ----------
    hop_seconds : float
        Patch hop in seconds.

    Returns
    -------
    dict
        JSON- and pickle-friendly description of the frontend.
    """
    return {
        "sample_rate": SAMPLE_RATE,
        "window_samples": STFT_WINDOW_SAMPLES,
        "hop_samples": STFT_HOP_SAMPLES,
        "fft_length": FFT_LENGTH,
        "num_mel_bins": NUM_MEL_BINS,
        "mel_min_hz": MEL_MIN_HZ,
        "mel_max_hz": MEL_MAX_HZ,
        "log_offset": LOG_OFFSET,
        "num_frames": NUM_FRAMES,
        "patch_hop_frames": hop_frames(hop_seconds),
    }


def hop_frames(hop_seconds):
    """Patch hop in STFT frames for a hop in seconds (must be a positive multiple of 10 ms)."""
    frames = int(round(hop_seconds / STFT_HOP_SECONDS))
    if frames < 1 or abs(frames * STFT_HOP_SECONDS - hop_seconds) > 1e-6:
        raise ParameterError(f"hop_seconds={hop_seconds!r} must be a positive multiple of {STFT_HOP_SECONDS} s")
    return frames
