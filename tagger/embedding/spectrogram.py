"""The spectrogram input: cached log-mel patches instead of embeddings (``frontend: melspec``).

:class:`PatchExtractor` stands where :class:`tagger.embedding.vggish.extractor.Embedder` stands
(``tagger prepare ... --frontend melspec``, ``tagger tag`` with a head
trained on patches): the same decode workers and the same VGGish frontend
(:mod:`tagger.embedding.vggish.frontend`, 96 x 64 log-mel patches of 0.96 s), but no network.
Cache entries are of kind ``'melspec'`` and hold the patches as float16:
31 patches x 96 x 64 x 2 bytes = 381 KB per 30 s clip (a float32 embedding
entry is 16 KB). Heads that take patches: the CNNs of :mod:`tagger.training.heads`.

``frontend='course'`` (``--frontend melspec-course``) makes the GTZAN course
projects' log-mel instead (:func:`tagger.embedding.params.course_params`: 22,050 Hz,
FFT 1,024, hop 512, 128 mels, in dB), cut into patches of 128 frames
(2.97 s): 11 patches x 128 x 128 x 2 bytes = 360 KB per 30 s clip.
"""

import os
import warnings

import numpy as np

from ..exceptions import AudioError, ParameterError
from . import params
from .audio import to_mono
from .decode import describe_error, load_source
from .kernels import import_librosa
from .pipeline import iter_embeddings
from .registry import Kind, Model
from .vggish import params as vggish_params
from .vggish.frontend import decode_messages, decode_options, waveform_to_patches

__all__ = ["PatchExtractor", "PATCH_DTYPE", "FRONTENDS", "course_patches", "course_messages", "make_extractor"]

PATCH_DTYPE = np.float16  # log-mel values lie in about [-5, 8] (VGGish) or [-80, 40] dB: float16 keeps 3 digits
FRONTENDS = ("vggish", "course")


class PatchExtractor:
    """Log-mel patches of clips, behind the interface of :class:`tagger.embedding.vggish.extractor.Embedder`.

    Parameters
    ----------
    hop_seconds : float
        Patch hop of the VGGish frontend (0.96 s: no overlap).
    short_policy : {'pad', 'skip'}
        Clips shorter than 0.96 s (VGGish frontend).
    frontend : {'vggish', 'course'}
        VGGish's 96 x 64 patches, or the course projects' 128 x 128.
    """

    kind = "melspec"
    pca_id = None
    postprocessor = None
    dtype = "float16"

    def __init__(self, *, hop_seconds=vggish_params.EXAMPLE_HOP_SECONDS, short_policy="pad", frontend="vggish"):
        if frontend not in FRONTENDS:
            raise ParameterError(f"frontend={frontend!r} must be one of {FRONTENDS}")
        self.course = frontend == "course"
        self.hop_seconds = hop_seconds
        self.short_policy = short_policy
        self.frontend = (
            params.course_params() if self.course else vggish_params.frontend_params(hop_seconds=hop_seconds)
        )
        self.network_id = "melspec-float16"
        self.batch_size = 256

    @classmethod
    def for_frontend(cls, frontend, **options):
        """The extractor that makes patches with the recorded settings ``frontend`` (a model's ``bundle.json``)."""
        if (frontend or {}).get("frontend") == "course":
            return cls(frontend="course")
        hop = (frontend or {}).get("patch_hop_frames")
        if hop:
            options["hop_seconds"] = round(hop * vggish_params.STFT_HOP_SECONDS, 6)
        return cls(**options)

    def run(self, patches):
        """Patches as they are cached: float16."""
        return np.asarray(patches).astype(PATCH_DTYPE)

    def finalize(self, patches):
        return patches

    def embed(self, y, sr):
        """Patches of a waveform: ``((T, 96, 64) float16, timestamps (T,))``, or (T, 128, 128) for ``course``."""
        if self.course:
            return course_patches(y, sr)
        patches, times = waveform_to_patches(y, sr, hop_seconds=self.hop_seconds, short_policy=self.short_policy)
        return self.run(patches), times

    def settle(self, paths):
        """Nothing depends on the run's audio (:meth:`tagger.embedding.extractor.Extractor.settle`)."""

    def iter_files(self, paths, *, workers=None, raw=False):
        """Patches of files, decoded in parallel (:func:`tagger.embedding.pipeline.iter_embeddings` without a network)."""
        if self.course:
            target, options = course_messages, {}
        else:
            target = decode_messages
            options = decode_options(hop_seconds=self.hop_seconds, short_policy=self.short_policy)
        rows = (params.COURSE_PATCH_FRAMES, params.COURSE_N_MELS) if self.course else vggish_params.PATCH_SHAPE
        return iter_embeddings(
            paths,
            self.run,
            target=target,
            target_options=options,
            row_shape=rows,
            batch_size=self.batch_size,
            workers=workers,
        )


def _course_logmel(y):
    librosa = import_librosa()
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=params.COURSE_SAMPLE_RATE,
        n_fft=params.COURSE_N_FFT,
        hop_length=params.COURSE_HOP,
        n_mels=params.COURSE_N_MELS,
    )
    return librosa.power_to_db(mel).T  # (frames, mels), dB re 1, floored 80 dB under the clip's peak


def _cut(logmel):
    """(frames, mels) -> (T, 128, mels) patches without overlap, the last one padded with the clip's floor."""
    n = params.COURSE_PATCH_FRAMES
    count = max(1, -(-len(logmel) // n))
    padded = np.full((count * n, logmel.shape[1]), logmel.min(), np.float32)
    padded[: len(logmel)] = logmel
    times = np.arange(count) * n * params.COURSE_HOP / params.COURSE_SAMPLE_RATE
    return padded.reshape(count, n, logmel.shape[1]).astype(PATCH_DTYPE), times


def _checked(y, name):
    if len(y) < params.COURSE_N_FFT:
        raise AudioError(f"{name}: {len(y)} samples at {params.COURSE_SAMPLE_RATE} Hz, shorter than one FFT frame")
    return y


def course_patches(y, sr):
    """The course projects' log-mel patches of a waveform.

    Parameters
    ----------
    y : np.ndarray, shape (n,) or (n, channels)
    sr : int

    Returns
    -------
    patches : np.ndarray, shape (T, 128, 128), float16
        dB log-mel, 128 frames (2.97 s) x 128 mels each; the last patch padded with the clip's floor.
    timestamps : np.ndarray, shape (T,)
        Patch start times in seconds.
    """
    return _cut(_course_logmel(_checked(to_mono(y, sr, sample_rate=params.COURSE_SAMPLE_RATE), "audio")))


def course_messages(index, path):
    """Worker job (:func:`tagger.embedding.pipeline.iter_embeddings`' ``target``): one file's course log-mel patches."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = _checked(load_source(path, sample_rate=params.COURSE_SAMPLE_RATE), os.fspath(path))
            patches, times = _cut(_course_logmel(y))
        yield ("patches", index, patches, times)
        yield ("done", index, len(y) / params.COURSE_SAMPLE_RATE, [str(w.message) for w in caught])
    except Exception as exc:  # noqa: BLE001 - any failure of one file is reported, never fatal
        yield ("error", index, describe_error(exc))


def make_extractor(kind, *, frontend=None, hop_seconds=vggish_params.EXAMPLE_HOP_SECONDS, short_policy="pad"):
    """The log-mel patches' extractor factory (:mod:`tagger.embedding.registry`).

    ``frontend``: ``'vggish'`` (default) or ``'course'``, or a recorded frontend (a ``bundle.json``'s), whose own
    hop wins over ``hop_seconds``.
    """
    if isinstance(frontend, str) or frontend is None:
        return PatchExtractor(frontend=frontend or "vggish", hop_seconds=hop_seconds, short_policy=short_policy)
    return PatchExtractor.for_frontend(frontend, short_policy=short_policy)


def _patch_frames_match(values, frontend):
    frames = frontend.get("num_frames", frontend.get("patch_frames"))
    return frames is None or values.shape[1] == frames


#: The log-mel patches model, declared to :mod:`tagger.embedding.registry`.
SPEC = Model(
    name="melspec",
    kinds=(
        Kind(
            "melspec",
            "melspec",
            (None, None),
            "float16",
            "log-mel patches of the recorded frontend (96 frames x 64 bands, 0.96 s)",
            precision="float16",
            row_names=("frames", "bands"),
            check=_patch_frames_match,
            head_frontend=True,
        ),
    ),
    sample_rate=vggish_params.SAMPLE_RATE,
    window_seconds=vggish_params.EXAMPLE_WINDOW_SECONDS,
    hop_seconds=vggish_params.EXAMPLE_HOP_SECONDS,
    frontend=vggish_params.frontend_params,
    weights=(),
    licence="none needed (computed, no weights)",
    make="tagger.embedding.spectrogram:make_extractor",
    options=("frontend", "hop_seconds", "short_policy"),
)
