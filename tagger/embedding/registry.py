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
``…:max_pool``  musicnn-  (753,) per patch   float32    also ``:mean_pool``, ``:penultimate`` (200,); musicnn-mtt,
                mtt ...                                 musicnn-msd; ``vgg-mtt:pool5``, ``vgg-msd:pool5`` (256,)
==============  ========  =================  =========  ========================================================

Each built-in model is a module or folder of its own that declares its spec as
``SPEC`` (VGGish: :mod:`tagger.embedding.vggish`), or its specs as ``SPECS`` (musicnn's four networks:
:mod:`tagger.embedding.musicnn`, kinds ``musicnn-mtt:max_pool`` ...), named by one line of
:data:`BUILT_IN` and imported on the registry's first use. A new model is one
:class:`Model` passed to :func:`register` (a test registers a toy one): its
kinds then cache, train, tag and export like these. Nothing here imports a
network: each model names its extractor factory (``'module:function'``),
imported when an extractor is first made.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

from ..exceptions import ParameterError

__all__ = [
    "Kind",
    "Model",
    "register",
    "unregister",
    "model",
    "kind",
    "kinds",
    "models",
    "make",
    "default_kind",
    "stored_kind",
    "resolve",
    "weights_reader",
    "BUILT_IN",
]

#: The built-in models, one line each: the module whose ``SPEC`` declares it. The first is the default model,
#: and its first kind the default kind (what an entry, a record or a ``bundle.json`` that names none holds).
BUILT_IN = (
    "tagger.embedding.vggish",
    "tagger.embedding.features",
    "tagger.embedding.spectrogram",
    "tagger.embedding.musicnn",
)


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
    to_float : callable or str, optional
        ``to_float(values) -> float32 values`` for a head to read (or where it is, ``'package.module:function'``),
        where a cast is not enough (VGGish's quantised values are dequantised).
    postprocessor : str or callable, optional
        ``postprocessor(params_path) -> callable`` (or where it is): what turns the values of ``served_by`` into
        these (VGGish's PCA whitening and quantisation, :class:`tagger.embedding.vggish.postprocess.Postprocessor`;
        its ``id`` is what entries record as ``pca``).
    head_frontend : bool
        A head trained on it records the frontend its inputs were made with (``bundle.json``), and its extractor
        is made from that record (log-mel patches: VGGish's or the course's, their hop); otherwise
        ``bundle.json`` holds the model's default frontend.
    """

    name: str
    model: str
    row_shape: tuple[int | None, ...]
    dtype: str
    description: str
    per_clip: bool = False
    precision: str | None = None
    pca: bool = False
    served_by: str | None = None
    cast: bool = True
    row_names: tuple[str, ...] = ()
    check: Callable[..., bool] | None = None
    head_frontend: bool = False
    to_float: Callable[..., Any] | str | None = None
    postprocessor: Callable[..., Any] | str | None = None

    def shape_text(self) -> str:
        """The entry shape in words, e.g. ``'(T>0, 128)'``."""
        names = self.row_names or ("D",) * len(self.row_shape)
        dims = ", ".join(name if d is None else str(d) for d, name in zip(self.row_shape, names))
        return f"({'1' if self.per_clip else 'T>0'}, {dims})"

    def fits(self, values: Any, frontend: dict[str, Any] | None = None) -> bool:
        """Whether an array has this kind's shape: rows > 0 (one per clip where ``per_clip``), every fixed
        dimension as declared, none empty, and what ``check(values, frontend)`` asks of a recorded frontend."""
        shape: tuple[int, ...] = tuple(getattr(values, "shape", ()))
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
    input_shape : tuple of int, optional
        One network input (VGGish: a (96, 64) log-mel patch), for a model with a network.
    weights_reader : str, optional
        The module that reads its weights (VGGish: :mod:`tagger.embedding.vggish.network`), or
        ``'module:factory'``, ``factory(model_name)`` giving an object (musicnn's ``WeightsReader``), keeping the weights
        protocol: ``WEIGHTS_ENV`` (the environment variable of the default source), ``PLAIN_FORMATS`` (file
        endings read without TensorFlow), ``resolve_source(source) -> str``, ``check_source(source)`` (raises
        :class:`~tagger.exceptions.DataError` before any work), ``check_plain_target(out)`` (the same, for an
        export's target) and ``export_weights(source, out) -> id`` (``tagger weights export``). None: the model has no weights.
    decode : callable or str, optional
        Its decode workers' job (or where it is): a module-level generator ``decode(index, path, *, hop_seconds,
        short_policy, chunk_patches)`` yielding ``("patches", index, inputs, timestamps)`` messages, then
        ``("done", ...)`` or ``("error", ...)`` (:func:`tagger.embedding.pipeline.iter_embeddings`); the Beam
        pipeline runs models that have one.
    plan : callable or str, optional
        ``plan(kind, **options) -> Planned or None`` (or where it is): what its extractor of these settings would
        record (:class:`tagger.embedding.extractor.Planned`), known without making it (no network, no reading of
        the weights), or None where only making it can tell; None: the model cannot plan, and a run always
        makes its extractor.
    trunk : callable or str, optional
        The fine-tuning hook (:mod:`tagger.training.finetune`): ``trunk(*, weights, name, dtype) -> keras.Model``,
        its network with trainable weights, ``(n, *input_shape) -> (n, *row_shape of its first kind)``; None: the
        model cannot be fine-tuned.
    """

    name: str
    kinds: tuple[Kind, ...]
    sample_rate: int
    window_seconds: float
    hop_seconds: float
    frontend: Callable[[], dict[str, Any]]
    weights: tuple[str, ...]
    licence: str
    make: Callable[..., Any] | str
    options: tuple[str, ...] = ()
    input_shape: tuple[int, ...] | None = None
    weights_reader: str | None = None
    decode: Callable[..., Any] | str | None = None
    trunk: Callable[..., Any] | str | None = None
    plan: Callable[..., Any] | str | None = None


_MODELS: dict[str, Model] = {}
_KINDS: dict[str, Kind] = {}
_LOADED: list[bool] = []


def _built_in() -> None:
    """Register the built-in models once (on first use, so that importing the registry loads no model)."""
    if not _LOADED:
        _LOADED.append(True)
        for name in BUILT_IN:
            module = importlib.import_module(name)
            for spec in getattr(module, "SPECS", None) or (module.SPEC,):
                register(spec, replace=True)


def register(spec: Model, *, replace: bool = False) -> Model:
    """Add a model (and its kinds) to the registry.

    Raises
    ------
    ParameterError
        A model or kind of that name is registered already (unless ``replace``), or a kind names another model.
    """
    _built_in()
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


def unregister(name: str) -> None:
    """Remove a model and its kinds (a test's toy model, after the test)."""
    _built_in()
    for k in _MODELS.pop(name).kinds:
        _KINDS.pop(k.name, None)


def model(name: str) -> Model:
    """The :class:`Model` of a name."""
    _built_in()
    try:
        return _MODELS[name]
    except KeyError:
        raise ParameterError(f"model={name!r} must be one of {tuple(_MODELS)}") from None


def kind(name: str) -> Kind:
    """The :class:`Kind` of a name."""
    _built_in()
    try:
        return _KINDS[name]
    except (KeyError, TypeError):
        raise ParameterError(f"kind={name!r} must be one of {kinds()}") from None


def kinds() -> tuple[str, ...]:
    """Every registered kind's name, the default model's first.

    Examples
    --------
    >>> from tagger.embedding import registry
    >>> registry.kinds()[:2]
    ('raw', 'postprocessed')
    >>> spec = registry.kind("musicnn-mtt:penultimate")
    >>> spec.model, spec.shape_text()
    ('musicnn-mtt', '(T>0, 200)')
    """
    _built_in()
    return tuple(_KINDS)


def models() -> tuple[str, ...]:
    """Every registered model's name, the default first."""
    _built_in()
    return tuple(_MODELS)


def default_kind() -> str:
    """The default kind: the default model's first (VGGish's ``raw``)."""
    return model(models()[0]).kinds[0].name


def stored_kind(name: str | None) -> str:
    """The kind a stored record names (a ``bundle.json``'s ``embedding``, a record's ``kind``): ``name``, else the
    default kind where it names none (records made before kinds were recorded hold VGGish's)."""
    return name or default_kind()


def make(kind_name: str | None = None, **options: Any) -> Any:
    """The extractor of a kind (default :func:`default_kind`; :func:`tagger.embedding.extractor.make` documents
    the options)."""
    spec = kind(default_kind() if kind_name is None else kind_name)
    return resolve(model(spec.model).make)(spec.name, **options)


def weights_reader(name: str | None = None) -> Any:
    """The weights reader of a model (default: the default model), imported now (see :attr:`Model.weights_reader`
    for its protocol): its module, or what ``'module:factory'`` makes for the model's name."""
    spec = model(models()[0] if name is None else name)
    if spec.weights_reader is None:
        raise ParameterError(f"model {spec.name!r} has no weights to read")
    if ":" in spec.weights_reader:
        return resolve(spec.weights_reader)(spec.name)
    return importlib.import_module(spec.weights_reader)


def resolve(ref: Callable[..., Any] | str) -> Callable[..., Any]:
    """A spec's callable: itself, or where it is (``'package.module:function'``, imported now, so that a model's
    network stays unloaded until it is used)."""
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)
