"""Every VGGish constant in one place (after Google's ``vggish_params.py``).

Nothing here computes anything; the frontend, the network and the cache
read these names so one edit changes them everywhere.
"""

from ..exceptions import ParameterError

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

# Postprocessor (PCA whitening + 8-bit quantisation)
QUANTIZE_MIN_VAL = -2.0
QUANTIZE_MAX_VAL = +2.0
PCA_MEANS_NAME = "pca_means"
PCA_EIGEN_VECTORS_NAME = "pca_eigen_vectors"

# Handcrafted features (the GTZAN feature table of the course projects, ``tagger.embedding.features``).
# These reproduce ``features_30_sec.csv`` (Kaggle's GTZAN copy) on the tracks it shares with the
# original GTZAN to 1e-4 relative or better: librosa's defaults of its 0.7-0.9 releases, under which
# the table was made. Since librosa 0.10 the STFT pads with zeros by default; the table's frames were
# padded by reflection, and its HPSS signals were cut to length after an inverse STFT without
# ``length`` (``librosa.util.fix_length``). See experiments/README.md for the check.
FEATURE_SAMPLE_RATE = 22050  # Hz, librosa.load's default
FEATURE_N_FFT = 2048
FEATURE_HOP = 512
FEATURE_PAD_MODE = "reflect"  # STFT frame padding (center=True)
FEATURE_N_MFCC = 20
FEATURE_SET = "gtzan57"  # the id cache entries and models record
# The paths that hold a whole file in memory (handcrafted features, course log-mel patches, augmented copies)
# refuse longer files: the features of a 10-minute file peaked at 2.1 GB here, about 3.5 MB per second
WHOLE_FILE_MAX_SECONDS = 1200.0

# Log-mel patches with the GTZAN course projects' settings (``--frontend melspec-course``; tagger.embedding.spectrogram)
COURSE_SAMPLE_RATE = 22050  # Hz
COURSE_N_FFT = 1024
COURSE_HOP = 512  # 23.2 ms
COURSE_N_MELS = 128
COURSE_PATCH_FRAMES = 128  # frames per patch: 2.97 s

# Weights
VGGISH_HUB_HANDLE = "https://tfhub.dev/google/vggish/1"
WEIGHTS_ENV = "TAGGER_VGGISH_WEIGHTS"  # local SavedModel dir, checkpoint, or hub handle
PCA_PARAMS_ENV = "TAGGER_VGGISH_PCA"  # local vggish_pca_params.npz
PCA_PARAMS_URL = "https://storage.googleapis.com/audioset/vggish_pca_params.npz"
CHECKPOINT_URL = "https://storage.googleapis.com/audioset/vggish_model.ckpt"

# Compute precision of the network
PRECISIONS = ("float32", "bfloat16", "float16", "auto")
PRECISION_ENV = "TAGGER_PRECISION"  # the default precision (else auto) of the API and the CLI alike
# The precision guard: a run in bfloat16 or float16 also computes its first real patches (no padding) in
# float32 and falls back to float32 when max |low - float32| / max |float32| exceeds the tolerance.
# bfloat16 keeps 8 significant bits (a 0.4 % step); with the fixture weights on GTZAN the metric was
# 0.8 % (bfloat16) and 0.1 % (float16): the tolerance leaves 2.5x that, and catches what is wrong rather
# than what is rounded (overflow, NaN, weights that amplify rounding through the nine layers).
GUARD_PATCHES = 64
GUARD_TOLERANCE = 0.02


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


def feature_params():
    """The handcrafted-feature settings, as a plain dict (stored with feature cache entries and outputs)."""
    return {
        "features": FEATURE_SET,
        "sample_rate": FEATURE_SAMPLE_RATE,
        "n_fft": FEATURE_N_FFT,
        "hop_length": FEATURE_HOP,
        "pad_mode": FEATURE_PAD_MODE,
        "n_mfcc": FEATURE_N_MFCC,
    }


def course_params():
    """The course projects' log-mel settings, as a plain dict (stored with their patch cache entries and models)."""
    return {
        "frontend": "course",
        "sample_rate": COURSE_SAMPLE_RATE,
        "n_fft": COURSE_N_FFT,
        "hop_length": COURSE_HOP,
        "n_mels": COURSE_N_MELS,
        "patch_frames": COURSE_PATCH_FRAMES,
        "log": "librosa.power_to_db (ref 1, top_db 80)",
    }
