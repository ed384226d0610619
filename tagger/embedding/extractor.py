"""The one interface of the three extractors, and the one factory that makes them.

An *extractor* turns audio into what a cache entry holds and a head reads:

=========================================  ==================  ============================================
class                                      ``kind``            one clip becomes
=========================================  ==================  ============================================
:class:`tagger.embedding.embed.Embedder`   raw, postprocessed  (T, 128) VGGish embeddings (uint8 when PCA'd)
:class:`.spectrogram.PatchExtractor`       melspec             (T, 96, 64) float16 log-mel patches
:class:`.features.FeatureExtractor`        features            (1, 57) handcrafted features
=========================================  ==================  ============================================

Everything that takes "an extractor" (the cache policy, ``embed_files``, the
dataset adapters, :class:`tagger.tagging.api.Tagger`) relies on
:class:`Extractor` alone; :func:`make` is where a kind becomes a class, and
:func:`for_head` makes the extractor a trained head's ``bundle.json`` asks for.
"""

from typing import Protocol, runtime_checkable

from ..exceptions import ParameterError
from .cache import KINDS
from .embed import Embedder
from .features import FeatureExtractor
from .spectrogram import PatchExtractor

__all__ = ["Extractor", "KINDS", "make", "for_head"]


@runtime_checkable
class Extractor(Protocol):
    """What every extractor has (the provenance record, :func:`tagger.embedding.provenance.of_extractor`, reads it).

    Attributes
    ----------
    kind : str
        One of :data:`tagger.embedding.cache.KINDS`: what :meth:`embed` returns.
    frontend : dict
        The settings of the frontend (sample rate, STFT, mels, patch hop), as recorded in cache entries.
    network_id : str
        What computed the values: the VGGish weights' hash with the precision, or the name of the feature set.
    pca_id : str or None
        The PCA parameters' hash, when the values are postprocessed.
    postprocessor : object or None
        The PCA postprocessor, when there is one.
    dtype : str
        Compute precision (VGGish) or storage type (patches: float16; features: float64).
    short_policy : str
        What a clip shorter than one patch gets: ``'pad'``, ``'skip'`` (or ``'error'``: features).
    """

    kind: str
    frontend: dict
    network_id: str
    pca_id: object
    postprocessor: object
    dtype: str
    short_policy: str

    def embed(self, y, sr):
        """One waveform ``y`` (samples, any rate ``sr`` in Hz) -> ``(values (T, ...), timestamps (T,) seconds)``."""

    def finalize(self, values):
        """Values as the extractor returns them (postprocessed where that applies) from its raw form."""

    def iter_files(self, paths, *, workers=None, raw=False):
        """Files decoded in parallel -> :class:`tagger.embedding.pipeline.TrackResult` in input order."""

    def settle(self, paths):
        """Fix what depends on the run's own audio before its provenance is recorded (a run's first step).

        VGGish: the precision guard measures the first files (:meth:`tagger.embedding.embed.Embedder.settle`);
        the other extractors have nothing to fix.
        """


def make(kind="raw", *, weights=None, pca_params=None, frontend=None, **options):
    """The extractor of a kind.

    Parameters
    ----------
    kind : str
        ``'raw'`` or ``'postprocessed'`` (VGGish, with PCA for the second), ``'melspec'`` (log-mel patches),
        ``'features'`` (the 57 handcrafted features).
    weights, pca_params : str, optional
        VGGish weights and PCA parameters (the VGGish kinds).
    frontend : dict or str, optional
        ``'melspec'``: a recorded frontend (a ``bundle.json``'s) or ``'vggish'`` / ``'course'``.
    **options
        The extractor's settings: ``batch_size``, ``hop_seconds``, ``short_policy``, ``dtype`` (VGGish);
        ``hop_seconds``, ``short_policy`` (patches; a recorded frontend's hop wins); none (features).

    Returns
    -------
    Extractor
    """
    if kind in ("raw", "postprocessed"):
        return Embedder(weights, postprocess=kind == "postprocessed", pca_params=pca_params, **options)
    if kind == "melspec":
        kept = {k: v for k, v in options.items() if k in ("hop_seconds", "short_policy")}
        if isinstance(frontend, str):
            return PatchExtractor(frontend=frontend, **kept)
        return PatchExtractor.for_frontend(frontend, **kept)
    if kind == "features":
        return FeatureExtractor()
    raise ParameterError(f"kind={kind!r} must be one of {KINDS}")


def for_head(meta, **options):
    """The extractor a trained head takes, from its ``bundle.json`` (``meta``): its kind and recorded frontend.

    For a head that takes patches, the patches are made as it was trained on them (course or VGGish frontend, its
    hop); features and patches need no VGGish, so ``weights``, ``pca_params`` and the network settings are dropped.
    """
    kind = meta.get("embedding", "raw")
    if kind in ("features", "melspec"):
        options = {k: v for k, v in options.items() if k == "short_policy"}
    return make(kind, frontend=meta.get("frontend"), **options)
