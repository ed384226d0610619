"""VGGish's extractor: the network loaded once, run on fixed-size batches of patches (arrays first).

>>> emb = Embedder(weights="/path/to/vggish_model.ckpt")
>>> e, t = emb.embed(y, sr)                      # (T, 128) float32, (T,) seconds
>>> embed_files(["music/"], "cache/", extractor=emb)  # tagger.embedding.embed: one pickle per track
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Iterable, Iterator

import numpy as np

from ... import backend
from ...exceptions import DataError, ParameterError, TaggerWarning
from .. import params as precision
from .. import weights as memo
from ..audio import iter_blocks
from ..augment import Augmented
from ..embed import default_dtype, guard_difference, resolve_dtype
from ..extractor import Planned
from ..pipeline import default_workers, iter_embeddings, refuse_in_bootstrapping_child
from . import device_frontend, params
from .frontend import decode_messages, decode_options, log_mel_of_samples, patch_shape, waveform_to_patches
from .network import build_vggish, network, read_weights, resolve_source
from .network import weights_id as vggish_weights_id
from .postprocess import Postprocessor

__all__ = ["Embedder", "embed", "make_extractor", "plan_extractor"]

log = logging.getLogger(__name__)


def _check(*, batch_size: int | None, guard_tolerance: float | None, frontend_kind: str | None) -> None:
    """Refuse settings no :class:`Embedder` takes."""
    if batch_size is not None and batch_size < 1:
        raise ParameterError(f"batch_size={batch_size} must be >= 1")
    if guard_tolerance is not None and not guard_tolerance >= 0:
        raise ParameterError(f"guard_tolerance={guard_tolerance!r} must be >= 0 (or None: no guard)")
    if frontend_kind is not None and frontend_kind not in device_frontend.FRONTENDS:
        raise ParameterError(f"frontend_kind={frontend_kind!r} must be one of {device_frontend.FRONTENDS}")


def _frontend(frontend_kind: str, hop_seconds: float) -> dict[str, Any]:
    """The frontend record of a frontend kind (the device frontend's names itself)."""
    on_audio = frontend_kind == device_frontend.KIND
    return (device_frontend.frontend_params if on_audio else params.frontend_params)(hop_seconds=hop_seconds)


def _network_id(weights_id: str, dtype: str) -> str:
    """What cache entries record as the network: the weights' id, with the precision where it is not float32."""
    return weights_id + ("" if dtype == "float32" else "+" + dtype)


class Embedder:
    """VGGish loaded once, run on fixed-size batches of patches.

    Parameters
    ----------
    weights : str, optional
        SavedModel folder, TF-slim checkpoint, TF Hub handle, or a plain
        ``.npz`` / ``.safetensors`` file (the only form that needs no TensorFlow)
        (default ``$TAGGER_VGGISH_WEIGHTS``, else the TF Hub model).
    batch_size : int, optional
        Patches per network call (default 64 on a CPU, 512 on a GPU); partial
        batches are zero-padded so the network always sees one shape.
    hop_seconds : float
        Patch hop (0.96 s default, 0.48 s for 50 % overlap).
    short_policy : {'pad', 'skip'}
        Clips shorter than 0.96 s.
    postprocess : bool
        PCA-whiten and quantise to uint8 with the official parameters.
    pca_params : str, optional
        ``vggish_pca_params.npz`` (default ``$TAGGER_VGGISH_PCA``).
    dtype : {'auto', 'float32', 'bfloat16', 'float16'}, optional
        Compute precision of the network (default ``$TAGGER_PRECISION``, else
        ``auto``, as for the CLI's ``--precision``). ``auto``
        (:func:`tagger.backend.auto_dtype`): bfloat16 on a GPU with bfloat16
        tensor cores, float16 on an older GPU; on a CPU bfloat16 where it has
        AMX or AVX512_BF16 and the backend is TensorFlow, else float32.
        Embeddings are returned as float32; the precision used is recorded
        (``dtype``, and in the network's id of cache entries and outputs).
    guard_tolerance : float or None
        The precision guard (bfloat16 and float16 only): the first real
        patches of the run (:data:`~tagger.embedding.params.GUARD_PATCHES`,
        fewer only where the run has fewer; never padding) are also computed
        in float32, and where :func:`guard_difference` exceeds this tolerance
        the embedder falls back to float32 with a :class:`TaggerWarning` that
        gives the measured difference (the float32 copy is freed either way).
        ``None`` turns the guard off. The outcome is :attr:`guard`.
    model : keras.Model, optional
        An already built float32 VGGish (``weights`` is then ignored); give ``weights_id`` too.
    weights_id : str, optional
    frontend_kind : {'reference', 'device'}, optional
        Where the log-mel is computed: ``'reference'`` (NumPy, float64, in the decode workers; the patches
        Google's code makes) or ``'device'`` (:mod:`tagger.embedding.vggish.device_frontend`: ``keras.ops`` in
        float32, with the network, which then takes each patch's 15,600 samples). The entries of the two are
        kept apart by the provenance (``frontend_kind`` in the frontend record). Default
        (:func:`~tagger.embedding.vggish.device_frontend.default_kind`): the reference frontend where the network
        computes in float32, the device frontend where it computes in bfloat16 or float16. Where the precision
        guard falls back to float32 before the run records its provenance, the default frontend falls back with it
        to the reference's (a frontend named here is kept), so every float32 run's entries are the same.

    Examples
    --------
    A 128-d embedding per 0.96 s of any waveform, at any rate (``WEIGHTS``: the path of VGGish's weights):

    >>> import numpy as np
    >>> embedder = Embedder(WEIGHTS, dtype="float32")
    >>> tone = np.sin(2 * np.pi * 440 * np.arange(3 * 22050) / 22050)
    >>> embeddings, timestamps = embedder.embed(tone, 22050)
    >>> embeddings.shape, embeddings.dtype
    ((3, 128), dtype('float32'))
    >>> timestamps.round(2).tolist()
    [0.0, 0.96, 1.92]
    """

    def __init__(
        self,
        weights: str | None = None,
        *,
        batch_size: int | None = None,
        hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
        short_policy: str = "pad",
        postprocess: bool = False,
        pca_params: str | None = None,
        dtype: str | None = None,
        guard_tolerance: float | None = precision.GUARD_TOLERANCE,
        model: Any = None,
        weights_id: str | None = None,
        frontend_kind: str | None = None,
    ) -> None:
        refuse_in_bootstrapping_child()  # before loading anything: see its docstring
        _check(batch_size=batch_size, guard_tolerance=guard_tolerance, frontend_kind=frontend_kind)
        self.on_gpu = bool(backend.gpus())
        if batch_size is None:
            batch_size = 512 if self.on_gpu else 64  # a GPU needs big batches to be busy; a CPU gains nothing
        dtype = resolve_dtype(dtype)
        #: whether the frontend is the precision's default (then a guard's fallback to float32 takes the reference's)
        self._default_frontend = frontend_kind is None
        frontend_kind = frontend_kind or device_frontend.default_kind(dtype)
        self.hop_seconds = hop_seconds
        self._set_frontend(frontend_kind)
        self.weights_source = None if model is not None else resolve_source(weights)  # what a Beam worker loads
        self.short_policy = short_policy
        self.batch_size = int(batch_size)
        self.postprocessor = Postprocessor(pca_params) if postprocess else None
        self.guard_tolerance = guard_tolerance
        #: the precision guard's outcome: None (float32, or no guard), else a dict with the metric's ``difference``,
        #: the ``tolerance``, the ``patches`` it was measured on and ``fell_back`` (``{'pending': True}`` until then)
        self.guard: dict[str, Any] | None = None
        self._sealed = False  # a run's provenance is recorded: a tripped guard must stop it, not relabel it
        if model is not None:
            reference, self.weights_id = model, weights_id or "unknown"
        else:
            # the weights are read once and copied straight into the network that runs (no float32 model
            # beside a bfloat16 one): only the guard keeps the float32 values, and only until it has measured
            files = memo.signature(self.weights_source)  # the files as they are read (the memo's key)
            reference = read_weights(weights)
            self.weights_id = vggish_weights_id(reference)
            memo.remember_id(self.weights_source, files, self.weights_id, model="vggish")
        if dtype == "float32":
            net = model if model is not None else network(reference)
            reference = None
        else:
            if model is not None:
                net = build_vggish(name=f"vggish_{dtype}", dtype=dtype, initializer="zeros")
                net.set_weights(model.get_weights())
            else:
                net = network(reference, name=f"vggish_{dtype}", dtype=dtype)
            if guard_tolerance is not None:
                self.guard = {"pending": True, "tolerance": float(guard_tolerance)}
            else:
                reference = None
        self._reference = reference  # float32 weights (or model) for the guard; None once it has measured
        self._use(net, dtype)

    def _set_frontend(self, frontend_kind: str) -> None:
        """Compute the log-mel with this frontend from now on (before :meth:`_use` makes the forward pass)."""
        self.frontend_kind = frontend_kind
        self._on_audio = frontend_kind == device_frontend.KIND
        self.frontend = _frontend(frontend_kind, self.hop_seconds)

    def _use(self, net: Any, dtype: str) -> None:
        """Run ``net`` (compute precision ``dtype``) from now on: one fixed batch shape, traced or compiled once."""
        self.dtype = dtype
        # the network (what cache entries record); the whole embedding is the provenance record
        self.network_id = _network_id(self.weights_id, dtype)
        self._net = net
        # with the device frontend, the frontend runs with the network: each input is a patch's 15,600 samples
        runs = device_frontend.with_frontend(net) if self._on_audio else net
        self._forward = backend.inference(runs, [(self.batch_size, *patch_shape(self._output))])

    @property
    def model(self) -> Any:
        """The Keras network that runs (in :attr:`dtype`)."""
        return self._net

    @property
    def guard_pending(self) -> bool:
        """Whether the precision guard has yet to measure this embedder's first real patches."""
        return bool(self.guard and self.guard.get("pending"))

    def check_precision(self, patches: np.ndarray) -> dict[str, Any] | None:
        """The precision guard, on real patches (no padding); a no-op once it has measured, or without a guard.

        Parameters
        ----------
        patches : np.ndarray, shape (n, 96, 64), float32
            The first :data:`~tagger.embedding.params.GUARD_PATCHES` are used.

        Returns
        -------
        dict or None
            :attr:`guard`.

        Raises
        ------
        DataError
            The guard trips after the run's provenance was recorded (:meth:`settle` found no audio to
            measure): the run stops rather than mislabel its output.
        """
        guard = self.guard
        if guard is None or not guard.get("pending") or len(patches) == 0:  # guard_pending, spelled out for mypy
            return guard
        import keras

        real = np.asarray(patches[: precision.GUARD_PATCHES], dtype=np.float32)
        reference = self._reference
        if isinstance(reference, dict):  # official weights: a float32 network for this one check
            reference = network(reference, name="vggish_guard")
        frames = device_frontend.log_mel(real) if self._on_audio else real  # the float32 network takes log-mel
        want = np.asarray(keras.ops.convert_to_numpy(reference(frames, training=False)), np.float32)
        got = self._run(real)
        difference = guard_difference(got, want)
        tolerance = guard["tolerance"]
        fell_back = not difference <= tolerance
        self.guard = {
            "difference": difference,
            "tolerance": tolerance,
            "patches": len(real),
            "precision": self.dtype,
            "fell_back": fell_back,
        }
        message = (
            f"{self.dtype} differs from float32 on this run's first {len(real)} patches by {difference:.3g}"
            f" (max |{self.dtype} - float32| / max |float32|; tolerance {tolerance:g})"
        )
        if fell_back:
            if self._sealed:
                raise DataError(
                    f"{message}, and this run's output already records {self.dtype}: rerun with"
                    " --precision float32 (dtype='float32')"
                )
            warnings.warn(f"{message}: falling back to float32 for this run", TaggerWarning, stacklevel=2)
            if self._default_frontend:  # float32's default frontend: its entries are those of any float32 run
                self._set_frontend(device_frontend.default_kind("float32"))
            self._use(reference, "float32")
        else:
            log.info("precision guard: %s", message)
            del reference
        self._reference = None
        return self.guard

    def settle(self, paths: list[str], *, max_files: int = 16) -> None:
        """Fix the precision before a run records its provenance: the guard measures the run's first files.

        Decodes ``paths`` in order, here, until :data:`~tagger.embedding.params.GUARD_PATCHES` patches (or
        ``max_files`` files, skipping those that fail: the run reports them), and runs :meth:`check_precision`
        on them. Every run that records what made its output (cache entries, tag outputs, Beam settings)
        calls this first, so :attr:`dtype` and :attr:`network_id` no longer change once they are written.

        Parameters
        ----------
        paths : sequence of str
        max_files : int
        """
        if self.guard_pending:
            found, n = [], 0
            for path in list(paths)[:max_files]:
                if isinstance(path, Augmented):
                    continue
                try:
                    patches = self._first_patches(path, precision.GUARD_PATCHES - n)
                except Exception:  # noqa: BLE001 - a file that fails here fails again in the run, which reports it
                    continue
                found.append(patches)
                n += len(patches)
                if n >= precision.GUARD_PATCHES:
                    break
            if n:
                self.check_precision(np.concatenate(found))
        self._sealed = True

    def _first_patches(self, path: str, count: int) -> np.ndarray:
        """About the first ``count`` patches of a file, decoding no more of it than they need (a long file's
        start, not the whole of it)."""
        need = int((count * self.hop_seconds + 2 * params.EXAMPLE_WINDOW_SECONDS) * params.SAMPLE_RATE)
        blocks, got = [], 0
        for block in iter_blocks(path):
            blocks.append(block)
            got += len(block)
            if got >= need:
                break
        if not blocks:
            return np.zeros((0, *patch_shape(self._output)), np.float32)
        patches, _ = waveform_to_patches(
            np.concatenate(blocks), hop_seconds=self.hop_seconds, short_policy="skip", output=self._output
        )
        return patches[:count]

    @property
    def _output(self) -> str:
        """What a patch is on its way to the network (:data:`.frontend.OUTPUTS`)."""
        return "audio" if self._on_audio else "log_mel"

    def run(self, patches: np.ndarray) -> np.ndarray:
        """Raw embeddings of patches (the precision guard measures the first call's, unless :meth:`settle` did).

        Parameters
        ----------
        patches : np.ndarray, shape (n, 96, 64), float32
            Log-mel patches; with the device frontend, each patch's samples, shape (n, 15600).

        Returns
        -------
        np.ndarray, shape (n, 128), float32
        """
        patches = np.asarray(patches, dtype=np.float32)
        if self.guard_pending:
            output = self._output
            self.check_precision(patches)
            if self._output != output:  # fell back to float32 and its reference frontend: these are samples
                patches = log_mel_of_samples(patches)
        return self._run(patches)

    def _run(self, patches: np.ndarray) -> np.ndarray:
        outs = []
        for start in range(0, len(patches), self.batch_size):
            chunk = patches[start : start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - n,) + chunk.shape[1:], np.float32)])
            outs.append(self._forward(chunk)[:n])
        return np.concatenate(outs) if outs else np.zeros((0, params.EMBEDDING_SIZE), np.float32)

    def finalize(self, emb: np.ndarray) -> np.ndarray:
        """Apply the postprocessor when enabled: (T, 128) float32 -> uint8; else unchanged."""
        return self.postprocessor(emb) if self.postprocessor is not None else emb

    def embed(self, y: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """Embed a waveform.

        Parameters
        ----------
        y : np.ndarray, shape (n,) or (n, channels)
        sr : int
            Sample rate in Hz (resampled to 16 kHz when needed).

        Returns
        -------
        emb : np.ndarray, shape (T, 128), float32 (uint8 when postprocessing)
        timestamps : np.ndarray, shape (T,), float64
            Patch start times in seconds.
        """
        patches, times = waveform_to_patches(
            y, sr, hop_seconds=self.hop_seconds, short_policy=self.short_policy, output=self._output
        )
        return self.finalize(self.run(patches)), times

    @property
    def kind(self) -> str:
        """``'postprocessed'`` or ``'raw'``: what :meth:`embed` returns."""
        return "raw" if self.postprocessor is None else "postprocessed"

    @property
    def pca_id(self) -> str | None:
        """Id of the PCA parameters in use (None without postprocessing)."""
        return None if self.postprocessor is None else self.postprocessor.id

    def iter_files(self, paths: Iterable[str], *, workers: int | None = None, raw: bool = False) -> Iterator[Any]:
        """Embed files in parallel; yield :class:`tagger.embedding.pipeline.TrackResult` in input order.

        Embeddings in the results are already postprocessed when enabled,
        unless ``raw`` (then they are the network's float32 output).
        """
        for result in iter_embeddings(
            paths,
            self.run,
            target=decode_messages,
            target_options=decode_options(
                hop_seconds=self.hop_seconds, short_policy=self.short_policy, output=self._output
            ),
            row_shape=(params.EMBEDDING_SIZE,),
            batch_size=self.batch_size,
            workers=default_workers(gpu=self.on_gpu) if workers is None else workers,
        ):
            if result.ok and not raw:
                result.embedding = self.finalize(result.embedding)
            yield result


def embed(
    y: np.ndarray, sr: int, *, embedder: Embedder | None = None, weights: str | None = None, **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Embed a waveform with VGGish (loads the network when no ``embedder`` is given).

    Parameters
    ----------
    y : np.ndarray, shape (n,) or (n, channels)
    sr : int
    embedder : Embedder, optional
    weights : str, optional
        Passed to :class:`Embedder` when it must be built.
    **options
        Other :class:`Embedder` settings.

    Returns
    -------
    emb : np.ndarray, shape (T, 128)
    timestamps : np.ndarray, shape (T,)
    """
    if embedder is None:
        embedder = Embedder(weights, **options)
    elif options:
        raise ParameterError(f"options {sorted(options)} conflict with the given embedder")
    return embedder.embed(y, sr)


def make_extractor(kind: str, *, weights: str | None = None, pca_params: str | None = None, **options: Any) -> Embedder:
    """VGGish's extractor factory (its :class:`tagger.embedding.registry.Model`'s ``make``): ``raw`` or ``postprocessed``."""
    return Embedder(weights, postprocess=kind == "postprocessed", pca_params=pca_params, **options)


def plan_extractor(
    kind: str,
    *,
    weights: str | None = None,
    pca_params: str | None = None,
    batch_size: int | None = None,
    hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
    short_policy: str = "pad",
    dtype: str | None = None,
    guard_tolerance: float | None = precision.GUARD_TOLERANCE,
    frontend_kind: str | None = None,
) -> Planned | None:
    """What :func:`make_extractor`'s :class:`Embedder` of these settings would record, without making it (its
    :class:`tagger.embedding.registry.Model`'s ``plan``; :func:`tagger.embedding.extractor.plan`).

    Returns
    -------
    Planned or None
        None where the weights' id is not remembered for their files as they are now (a TF Hub handle, weights
        never read here, a changed file), or ``auto`` precision depends on an accelerator or on a backend that only
        Keras can name. With a precision guard, the record is the one a run whose guard passes makes.

    Raises
    ------
    ParameterError, DataError
        As :class:`Embedder` would: a bad setting, missing PCA parameters.
    """
    _check(batch_size=batch_size, guard_tolerance=guard_tolerance, frontend_kind=frontend_kind)
    dtype = dtype or default_dtype()
    if dtype == "auto":
        dtype = backend.planned_auto_dtype()
    weights_id = memo.recall_id(resolve_source(weights), model="vggish")
    if dtype is None or weights_id is None:
        return None
    resolve_dtype(dtype)  # a named precision is one of those tagger computes in
    frontend_kind = frontend_kind or device_frontend.default_kind(dtype)
    postprocessor = Postprocessor(pca_params) if kind == "postprocessed" else None
    return Planned(
        kind=kind,
        frontend=_frontend(frontend_kind, hop_seconds),
        network_id=_network_id(weights_id, dtype),
        pca_id=None if postprocessor is None else postprocessor.id,
        dtype=dtype,
        short_policy=short_policy,
        postprocessor=postprocessor,
    )
