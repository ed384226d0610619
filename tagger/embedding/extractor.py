"""The one interface of every model's extractor, and the one factory that makes them.

An *extractor* turns audio into what a cache entry holds and a head reads; the built-in ones:

=================================================  ==================  ============================================
class                                              ``kind``            one clip becomes
=================================================  ==================  ============================================
:class:`tagger.embedding.vggish.extractor.Embedder`  raw, postprocessed  (T, 128) VGGish embeddings (uint8 when PCA'd)
:class:`.spectrogram.PatchExtractor`               melspec             (T, 96, 64) float16 log-mel patches
:class:`.features.FeatureExtractor`                features            (1, 57) handcrafted features
=================================================  ==================  ============================================

Everything that takes "an extractor" (the cache policy, ``embed_files``, the
dataset adapters, :class:`tagger.tagging.api.Tagger`) relies on
:class:`Extractor` alone; :func:`make` is where a kind becomes a class, and
:func:`for_head` makes the extractor a trained head's ``bundle.json`` asks for.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol, runtime_checkable

from ..exceptions import ParameterError
from . import registry

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Extractor", "Planned", "Deferred", "make", "plan", "deferred", "for_head", "plan_for_head"]


@runtime_checkable
class Extractor(Protocol):
    """What every extractor has (the provenance record, :func:`tagger.embedding.provenance.of_extractor`, reads it).

    Attributes
    ----------
    kind : str
        A registered kind (:func:`tagger.embedding.registry.kinds`): what :meth:`embed` returns.
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
    frontend: dict[str, Any]
    network_id: str
    pca_id: object
    postprocessor: object
    dtype: str
    short_policy: str

    def embed(self, y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """One waveform ``y`` (samples, any rate ``sr`` in Hz) -> ``(values (T, ...), timestamps (T,) seconds)``."""

    def finalize(self, values: np.ndarray) -> np.ndarray:
        """Values as the extractor returns them (postprocessed where that applies) from its raw form."""

    def iter_files(self, paths: Iterable[str], *, workers: int | None = None, raw: bool = False) -> Iterator[Any]:
        """Files decoded in parallel -> :class:`tagger.embedding.pipeline.TrackResult` in input order."""

    def settle(self, paths: list[str]) -> None:
        """Fix what depends on the run's own audio before its provenance is recorded (a run's first step).

        VGGish: the precision guard measures the first files (:meth:`tagger.embedding.vggish.extractor.Embedder.settle`);
        the other extractors have nothing to fix.
        """


def make(
    kind: str | None = None,
    *,
    weights: str | None = None,
    pca_params: str | None = None,
    frontend: dict[str, Any] | str | None = None,
    **options: Any,
) -> Extractor:
    """The extractor of a kind, made by its model in the registry (:func:`tagger.embedding.registry.make`).

    Parameters
    ----------
    kind : str, optional
        A registered kind (:func:`tagger.embedding.registry.kinds`; default the default model's first, VGGish's
        ``'raw'``): ``'raw'`` or ``'postprocessed'`` (VGGish, with
        PCA for the second), ``'melspec'`` (log-mel patches), ``'features'`` (the 57 handcrafted features).
    weights, pca_params : str, optional
        VGGish weights and PCA parameters (the VGGish kinds).
    frontend : dict or str, optional
        ``'melspec'``: a recorded frontend (a ``bundle.json``'s) or ``'vggish'`` / ``'course'``.
    **options
        The extractor's settings: ``batch_size``, ``hop_seconds``, ``short_policy``, ``dtype`` (VGGish);
        ``hop_seconds``, ``short_policy`` (patches; a recorded frontend's hop wins); none (features). A model
        ignores the settings it does not take (:attr:`tagger.embedding.registry.Model.options`).

    Returns
    -------
    Extractor
    """
    kind, taken = _settings(kind, dict(options, weights=weights, pca_params=pca_params, frontend=frontend))
    return registry.make(kind, **taken)


def _settings(kind: str | None, given: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A kind's name and the settings its model takes of ``given`` (an unknown setting refused)."""
    kind = registry.stored_kind(kind)
    spec = registry.model(registry.kind(kind).model)
    unknown = sorted(set(given) - {o for name in registry.models() for o in registry.model(name).options})
    if unknown:
        raise ParameterError(f"{', '.join(unknown)}: no registered model takes such a setting")
    return kind, {k: v for k, v in given.items() if k in spec.options and v is not None}


@dataclasses.dataclass(frozen=True)
class Planned:
    """What an extractor of given settings would record, known without making it (:func:`plan`).

    It has the attributes of an :class:`Extractor` that the provenance record reads
    (:func:`tagger.embedding.provenance.of_extractor`), and its PCA postprocessor, which serves a postprocessed
    head from raw cache entries; it embeds nothing. A run whose every clip is in the cache or the output under
    this record has nothing to do and never makes the extractor (:func:`tagger.embedding.embed.embed_items`,
    :func:`tagger.tagging.writer.tag_to_file`).
    """

    kind: str
    frontend: dict[str, Any]
    network_id: str
    pca_id: str | None
    dtype: str
    short_policy: str
    postprocessor: Any = None


def plan(
    kind: str | None = None,
    *,
    weights: str | None = None,
    pca_params: str | None = None,
    frontend: dict[str, Any] | str | None = None,
    **options: Any,
) -> Planned | None:
    """The :class:`Planned` record of :func:`make`'s extractor (same arguments), or None where only making it can tell.

    A model plans through its :attr:`tagger.embedding.registry.Model.plan`: VGGish knows its record when its
    weights' id is remembered for the files as they are (:func:`tagger.embedding.weights.recall_id`) and its
    precision does not depend on an accelerator; its precision guard is assumed to pass (a run that found it
    tripped recorded float32, which this record does not match: that run's entries are judged after the network
    is made). A model without a plan gives None.
    """
    kind, taken = _settings(kind, dict(options, weights=weights, pca_params=pca_params, frontend=frontend))
    planner = registry.model(registry.kind(kind).model).plan
    return None if planner is None else registry.resolve(planner)(kind, **taken)


class Deferred:
    """An extractor made on first need (:meth:`get`), with what it would record known before (``planned``).

    Parameters
    ----------
    make : callable
        ``make() -> Extractor``.
    planned : Planned or None
        :func:`plan`'s record of the same settings (None: unknown until it is made).
    """

    def __init__(self, make: Callable[[], Extractor], planned: Planned | None) -> None:
        self._make = make
        self.planned = planned
        self._made: Extractor | None = None

    @property
    def made(self) -> bool:
        """Whether :meth:`get` has made the extractor."""
        return self._made is not None

    def get(self) -> Extractor:
        """The extractor, made the first time (the network loads then)."""
        if self._made is None:
            self._made = self._make()
        return self._made


def deferred(kind: str | None = None, **settings: Any) -> Deferred:
    """:func:`make`'s extractor, made on first need, with :func:`plan`'s record of it (same arguments)."""
    return Deferred(lambda: make(kind, **settings), plan(kind, **settings))


def for_head(meta: dict[str, Any], **options: Any) -> Extractor:
    """The extractor a trained head takes, from its ``bundle.json`` (``meta``): its kind and recorded frontend.

    For a head that takes patches, the patches are made as it was trained on them (course or VGGish frontend, its
    hop); a model takes only its own settings, so features and patches need no VGGish weights.
    """
    return make(registry.stored_kind(meta.get("embedding")), frontend=meta.get("frontend"), **options)


def plan_for_head(meta: dict[str, Any], **options: Any) -> Planned | None:
    """:func:`plan` of :func:`for_head`'s extractor."""
    return plan(registry.stored_kind(meta.get("embedding")), frontend=meta.get("frontend"), **options)
