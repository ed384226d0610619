"""The constants of the embedding step that belong to no network: compute precision and its guard, the
whole-file limit, the handcrafted features' and the course log-mel patches' settings.

VGGish's own are in :mod:`tagger.embedding.vggish.params`, as each model keeps its own.
"""

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
