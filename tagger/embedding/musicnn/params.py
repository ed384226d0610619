"""Every musicnn constant in one place (after musicnn's ``configuration.py``), with where each comes from.

musicnn 0.1.0 (Pons & Serra, MTG-UPF; ISC licence): ``musicnn/configuration.py`` (rates, FFT, mels, labels),
``musicnn/extractor.py`` (``batch_data``: the log compression and the patching), each network's
``config.json`` (``n_frames``, ``pad_short``), ``experiment.result`` (test figures) and ``models.py``
(architectures). Nothing here computes anything.
"""

from ...exceptions import ParameterError

# Audio (configuration.SR; tagger's decoder gives the samples librosa.load(path, sr=16000) gives)
SAMPLE_RATE = 16000  # Hz

# Mel spectrogram: librosa.feature.melspectrogram(y, sr, hop_length=FFT_HOP, n_fft=FFT_SIZE, n_mels=N_MELS), every
# other setting librosa's default, as batch_data calls it: power 2, a periodic Hann window of n_fft, Slaney mel
# scale and Slaney (area) normalisation, 0 Hz to sr / 2, center=True. librosa >= 0.10 pads the centred frames with
# zeros; the librosa musicnn was trained with (0.6 / 0.7) reflected them: tagger keeps librosa 0.11's, the one the
# reference outputs (benchmarks/musicnn_reference.py) were made with.
FFT_SIZE = 512  # configuration.FFT_SIZE
FFT_HOP = 256  # configuration.FFT_HOP (16 ms)
N_MELS = 96  # configuration.N_MELS
MEL_POWER = 2.0
MEL_HTK = False  # Slaney's mel scale
MEL_NORM = "slaney"
CENTER = True
PAD_MODE = "constant"  # librosa 0.11's default (see above)

# Log compression (batch_data): log10(1 + LOG_C * mel), with the mel first rounded to float16 (its
# ``audio_rep.astype(np.float16)``) and the log then computed in float32, as NumPy 1 did (NumPy 2 keeps float16
# there and overflows to inf; the issue measured 0.8 % of blues.00000's bins)
LOG_C = 10000.0
STORED_DTYPE = "float16"

# Patches: 187 frames (config.json n_frames; librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1:
# 3 s), hop 187 (extractor's default input_overlap=False: overlap = n_frames)
NUM_FRAMES = 187
PATCH_HOP_FRAMES = 187
PATCH_SHAPE = (NUM_FRAMES, N_MELS)  # one network input
PATCH_SECONDS = NUM_FRAMES * FFT_HOP / SAMPLE_RATE  # 2.992 s between patch starts
# The tail after the last complete patch is dropped, as batch_data drops it. A clip shorter than one patch has
# its frames repeated until they fill one (config.json pad_short: "repeat-pad", how the networks were trained);
# short_policy="skip" gives such a clip no patch instead.
SHORT_POLICIES = ("pad", "skip")

# Networks (models.define_model): architecture, training data, labels, test figures (experiment.result)
MUSICNN_MIDEND_FILTERS = 64
MUSICNN_BACKEND_UNITS = 200
FRONTEND_FILTER_FACTOR = 1.6  # models.frontend(num_filt=1.6)
VGG_FILTERS = 128
NUM_CLASSES = 50
MIDEND_SIZE = 561 + 3 * MUSICNN_MIDEND_FILTERS  # 2 x 204 timbral + 3 x 51 temporal, then the mid-end's three: 753
POOL5_SIZE = 2 * VGG_FILTERS  # vgg's pool5: (2, 1, 128), flattened

MTT_LABELS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano", "ambient",
    "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals", "no vocals",
    "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man",
    "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello",
    "no voice", "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
MSD_LABELS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient",
    "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening",
    "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad", "House",
    "happy",
)  # fmt: skip

#: tagger's name -> (musicnn's folder and model name, architecture, training data)
NETWORKS = {
    "musicnn-mtt": ("MTT_musicnn", "musicnn", "MTT"),
    "musicnn-msd": ("MSD_musicnn", "musicnn", "MSD"),
    "vgg-mtt": ("MTT_vgg", "vgg", "MTT"),
    "vgg-msd": ("MSD_vgg", "vgg", "MSD"),
}
LABELS = {"MTT": MTT_LABELS, "MSD": MSD_LABELS}
DATASETS = {
    "MTT": "MagnaTagATune (Magnatune's audio, CC BY-NC-SA 1.0), its 50 most frequent tags",
    "MSD": "the Million Song Dataset's 30 s previews with Last.fm's 50 most frequent tags",
}
#: experiment.result of each network, as it is written (the MSD files write 'AUC' twice: ROC- and PR-AUC are not
#: named there; the first is about the size of the MTT networks' ROC-AUC, the second of their PR-AUC)
TEST_FIGURES = {
    "MTT_musicnn": "MagnaTagATune test set: ROC-AUC 0.9067, PR-AUC 0.3831",
    "MTT_vgg": "MagnaTagATune test set: 'AUC' 0.9030 and 'AUC' 0.3823 (the file does not say which is ROC or PR)",
    "MSD_musicnn": "MSD test set: 'AUC' 0.8802 and 'AUC' 0.2891 (the file does not say which is ROC or PR)",
    "MSD_vgg": "MSD test set: 'AUC' 0.8768 and 'AUC' 0.2819 (the file does not say which is ROC or PR)",
}
LICENCE = "ISC (musicnn's code and weight files, Pons & Serra, MTG-UPF)"

# Weights
PACKAGE = "musicnn"  # pip install --no-deps musicnn: its folder holds the four checkpoint folders
WEIGHTS_ENV = "TAGGER_MUSICNN_WEIGHTS"  # a folder holding MTT_musicnn/, MSD_musicnn/, MTT_vgg/, MSD_vgg/


def frontend_params():
    """The frontend settings that determine a patch, as a plain dict (stored with every entry and head).

    Returns
    -------
    dict
    """
    return {
        "frontend": "musicnn",
        "sample_rate": SAMPLE_RATE,
        "n_fft": FFT_SIZE,
        "hop_length": FFT_HOP,
        "n_mels": N_MELS,
        "mel": "librosa slaney, power 2, center zero-padded",
        "log": "log10(1 + 10000 * float16(mel)), float32",
        "num_frames": NUM_FRAMES,
        "patch_hop_frames": PATCH_HOP_FRAMES,
    }


def network(name):
    """``(folder, architecture, dataset)`` of a network named as tagger names it (``'musicnn-mtt'`` ...)."""
    try:
        return NETWORKS[name]
    except KeyError:
        raise ParameterError(f"musicnn network {name!r} must be one of {tuple(NETWORKS)}") from None
