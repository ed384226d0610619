"""The registry of embedding models: one frozen spec per model, and the kinds of values each caches.

A *model* turns audio into values a head reads (VGGish's embeddings, the
handcrafted features, log-mel patches); a *kind* is what one cache entry
holds, as entries, provenance records and ``bundle.json`` name it. Everything
that needs to know what a kind is (the cache's shape and dtype rule, the
provenance record, :func:`tagger.embedding.extractor.make`, cards, starter
configs) reads its :class:`Kind` here instead of branching on its name:

==============  ========  =================  =========  ========================================================
kind            model     one row            stored as  notes
==============  ========  =================  =========  ========================================================
``raw``         vggish    (128,) per patch   float32    precision from the network's id
``postprocessed`` vggish  (128,) per patch   uint8      PCA-whitened, quantised; raw entries serve it
``features``    features  (57,) per clip     float32    computed in float64
``melspec``     melspec   (frames, bands)    float16    the recorded frontend's patches
==============  ========  =================  =========  ========================================================

A new model is one :class:`Model` passed to :func:`register` (a test registers
a toy one): its kinds then cache, train, tag and export like these. Nothing
here imports a network: each model names its extractor factory
(``'module:function'``), imported when an extractor is first made.
"""

import dataclasses
import importlib
from typing import Callable

from ..exceptions import ParameterError
from . import params

__all__ = ["Kind", "Model", "register", "unregister", "model", "kind", "kinds", "models", "make"]


@dataclasses.dataclass(frozen=True)
class Kind:
    """What one kind of cache entry holds.

    Attributes
    ----------
    name : str
        As entries, provenance records and ``bundle.json`` spell it.
    model : str
        The :class:`Model` that makes it.
    row_shape : tuple of int or None
        The shape of one row after the first axis; None where any positive size goes (features: their count;
        log-mel patches: the recorded frontend's frames and bands).
    dtype : str
        How the values are stored.
    description : str
        What a head trained on it needs, in words (model cards).
    per_clip : bool
        One row per clip (features) rather than one per patch over time.
    precision : str or None
        The precision every entry records (features: float64, patches: float16); None: the network's, read from
        its id (``'…+bfloat16'``).
    pca : bool
        Postprocessed with PCA parameters, whose id the entry must record.
    served_by : str or None
        A kind whose entries serve readers of this one, transformed on reading (``raw`` for ``postprocessed``).
    cast : bool
        Values of another dtype are cast when cached; False: refused (quantised values are never made by a cast).
    row_names : tuple of str
        Words for the free dimensions of ``row_shape`` in messages.
    check : callable, optional
        ``check(values, frontend) -> bool``: what the shape must match in the entry's recorded frontend.
    head_frontend : bool
        A head trained on it records the frontend its inputs were made with (``bundle.json``), and its extractor
        is made from that record (log-mel patches: VGGish's or the course's, their hop); otherwise
        ``bundle.json`` holds the model's default frontend.
    """

    name: str
    model: str
    row_shape: tuple
    dtype: str
    description: str
    per_clip: bool = False
    precision: str = None
    pca: bool = False
    served_by: str = None
    cast: bool = True
    row_names: tuple = ()
    check: Callable = None
    head_frontend: bool = False

    def shape_text(self):
        """The entry shape in words, e.g. ``'(T>0, 128)'``."""
        names = self.row_names or ("D",) * len(self.row_shape)
        dims = ", ".join(name if d is None else str(d) for d, name in zip(self.row_shape, names))
        return f"({'1' if self.per_clip else 'T>0'}, {dims})"

    def fits(self, values, frontend=None):
        """Whether an array has this kind's shape: rows > 0 (one per clip where ``per_clip``), every fixed
        dimension as declared, none empty, and what ``check(values, frontend)`` asks of a recorded frontend."""
        shape = getattr(values, "shape", ())
        if len(shape) != 1 + len(self.row_shape) or 0 in shape or (self.per_clip and shape[0] != 1):
            return False
        if any(want is not None and got != want for got, want in zip(shape[1:], self.row_shape)):
            return False
        return self.check is None or frontend is None or self.check(values, frontend)


@dataclasses.dataclass(frozen=True)
class Model:
    """One embedding model: its frontend, the kinds it outputs, its weights and how its extractor is made.

    Attributes
    ----------
    name : str
    kinds : tuple of Kind
        The first is its default.
    sample_rate : int
        Hz, what its frontend resamples to.
    window_seconds, hop_seconds : float
        One row's span and the default hop between rows (seconds).
    frontend : callable
        ``frontend() -> dict``: its frontend settings, as entries record them.
    weights : tuple of str
        The forms its weights are read from (empty: it has none).
    licence : str
        The licence of its weights (or of the method, when it has none).
    make : callable or str
        ``make(kind, **options) -> Extractor`` (:class:`tagger.embedding.extractor.Extractor`), or where it is
        (``'package.module:function'``), imported when an extractor is first made.
    options : tuple of str
        The keyword options ``make`` takes; a trained head's extractor (:func:`tagger.embedding.extractor.for_head`)
        gets only these.
    """

    name: str
    kinds: tuple
    sample_rate: int
    window_seconds: float
    hop_seconds: float
    frontend: Callable
    weights: tuple
    licence: str
    make: Callable
    options: tuple = ()


_MODELS = {}
_KINDS = {}


def register(spec, *, replace=False):
    """Add a model (and its kinds) to the registry.

    Raises
    ------
    ParameterError
        A model or kind of that name is registered already (unless ``replace``), or a kind names another model.
    """
    if not isinstance(spec, Model) or not spec.kinds:
        raise ParameterError(f"register({spec!r}): give a Model with at least one Kind")
    for k in spec.kinds:
        if k.model != spec.name:
            raise ParameterError(f"kind {k.name!r} names model {k.model!r}, not {spec.name!r}")
        taken = _KINDS.get(k.name)
        if taken is not None and taken.model != spec.name:
            raise ParameterError(f"kind {k.name!r} belongs to model {taken.model!r} already")
    if spec.name in _MODELS and not replace:
        raise ParameterError(f"model {spec.name!r} is registered already (pass replace=True to replace it)")
    if spec.name in _MODELS:
        for old in _MODELS[spec.name].kinds:
            _KINDS.pop(old.name, None)
    _MODELS[spec.name] = spec
    _KINDS.update({k.name: k for k in spec.kinds})
    return spec


def unregister(name):
    """Remove a model and its kinds (a test's toy model, after the test)."""
    for k in _MODELS.pop(name).kinds:
        _KINDS.pop(k.name, None)


def model(name):
    """The :class:`Model` of a name."""
    try:
        return _MODELS[name]
    except KeyError:
        raise ParameterError(f"model={name!r} must be one of {tuple(_MODELS)}") from None


def kind(name):
    """The :class:`Kind` of a name."""
    try:
        return _KINDS[name]
    except (KeyError, TypeError):
        raise ParameterError(f"kind={name!r} must be one of {kinds()}") from None


def kinds():
    """Every registered kind's name, VGGish's first."""
    return tuple(_KINDS)


def models():
    """Every registered model's name, VGGish first."""
    return tuple(_MODELS)


def make(kind_name="raw", **options):
    """The extractor of a kind (:func:`tagger.embedding.extractor.make` documents the options)."""
    spec = kind(kind_name)
    factory = model(spec.model).make
    if isinstance(
        factory, str
    ):  # "package.module:function", imported now (a model's network stays unloaded until used)
        module, _, name = factory.partition(":")
        factory = getattr(importlib.import_module(module), name)
    return factory(spec.name, **options)


def _patch_frames_match(values, frontend):
    frames = frontend.get("num_frames", frontend.get("patch_frames"))
    return frames is None or values.shape[1] == frames


# the built-in models; each names its extractor factory by "module:function", imported when an extractor is made


_VGGISH_ROW = (params.EMBEDDING_SIZE,)
register(
    Model(
        name="vggish",
        kinds=(
            Kind("raw", "vggish", _VGGISH_ROW, "float32", "raw VGGish embeddings (128-d, 0.96 s patches)"),
            Kind(
                "postprocessed",
                "vggish",
                _VGGISH_ROW,
                "uint8",
                "VGGish embeddings, PCA-whitened and 8-bit quantised with Google's released PCA parameters"
                " (tagger postprocesses raw output itself)",
                pca=True,
                served_by="raw",
                cast=False,
            ),
        ),
        sample_rate=params.SAMPLE_RATE,
        window_seconds=params.EXAMPLE_WINDOW_SECONDS,
        hop_seconds=params.EXAMPLE_HOP_SECONDS,
        frontend=params.frontend_params,
        weights=("TF1 checkpoint", "SavedModel", ".npz", ".safetensors"),
        licence="Apache-2.0 (Google's released VGGish weights)",
        make="tagger.embedding.embed:make_extractor",
        options=("weights", "pca_params", "batch_size", "hop_seconds", "short_policy", "dtype"),
    )
)
register(
    Model(
        name="features",
        kinds=(
            Kind(
                "features",
                "features",
                (None,),
                "float32",
                "the 57 handcrafted features of tagger.embedding.features",
                per_clip=True,
                precision="float64",
                row_names=("D>0",),
            ),
        ),
        sample_rate=params.SAMPLE_RATE,
        window_seconds=0.0,
        hop_seconds=0.0,
        frontend=params.feature_params,
        weights=(),
        licence="none needed (computed, no weights)",
        make="tagger.embedding.features:make_extractor",
        options=(),
    )
)
register(
    Model(
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
        sample_rate=params.SAMPLE_RATE,
        window_seconds=params.EXAMPLE_WINDOW_SECONDS,
        hop_seconds=params.EXAMPLE_HOP_SECONDS,
        frontend=params.frontend_params,
        weights=(),
        licence="none needed (computed, no weights)",
        make="tagger.embedding.spectrogram:make_extractor",
        options=("frontend", "hop_seconds", "short_policy"),
    )
)
