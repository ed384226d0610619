"""Tagging clips with a head: the :class:`Head` (embeddings -> tags) and the :class:`Tagger` API.

>>> tagger = Tagger("music", weights="vggish_model.ckpt", pca_params="vggish_pca_params.npz")
>>> df = tagger.tag(["song.mp3", "folder/"])          # one row per clip
>>> df = tagger.tag_arrays([(y, sr)])                 # arrays work too
"""

from __future__ import annotations

import logging
import os
import types
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from .. import backend, locks
from ..embedding import cache, files, provenance, registry
from ..embedding.extractor import Deferred, Planned, for_head, plan_for_head
from ..embedding.pipeline import refuse_in_bootstrapping_child
from ..exceptions import AudioError, DataError, ParameterError
from ..training import bundle
from . import writer
from .results import TagResult

if TYPE_CHECKING:
    import pandas as pd

    from ..embedding.extractor import Extractor

__all__ = ["Head", "Tagger", "TagResult", "check_trained_on"]

log = logging.getLogger(__name__)


class Head:
    """A trained head with its labels and thresholds: clip embeddings -> probabilities.

    Parameters
    ----------
    model : str
        A shipped bundle name (``'music'``, ``'genre10'``), a bundle folder or a run folder.
    described : types.SimpleNamespace, optional
        :func:`describe` of ``model``, where it was read already (the bundle is not read and hashed again).

    Attributes
    ----------
    model : keras.Model
        The loaded head.
    name : str
        ``model`` as given.
    meta : dict
        Its ``bundle.json``: the kind of input it takes, the frontend, the task, the provenance it was trained on.
    labels : list of str
    thresholds : np.ndarray, shape (n_labels,)
    task : {'multilabel', 'singlelabel'}
    input_kind : str
        What it takes (:func:`tagger.embedding.registry.kinds`): raw or postprocessed embeddings, features, patches.
    model_hash : str
        :func:`tagger.training.bundle.content_hash` of the bundle.
    """

    model: Any
    name: str
    folder: str
    meta: dict[str, Any]
    labels: list[str]
    thresholds: np.ndarray
    task: str
    input_kind: str
    model_hash: str

    def __init__(self, model: str = "music", *, described: types.SimpleNamespace | None = None) -> None:
        vars(self).update(vars(described if described is not None else describe(model)))
        self.model = bundle.load_head(self.folder, compile=False)
        item = [int(d) for d in self.model.inputs[0].shape[2:]]  # [128] (VGGish), [57] (features), [96, 64] (patches)
        # TensorFlow traces once for every clip length; JAX compiles once per length met
        self._run_head = backend.inference(self.model, [(None, None, *item), (None, None)])

    def scores(self, embedding: np.ndarray, *, taggram: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Clip probabilities and the per-patch taggram of one clip.

        Parameters
        ----------
        embedding : np.ndarray, shape (T, 128)
            As the extractor returns it (uint8 when postprocessed).
        taggram : bool
            Also compute the taggram.

        Returns
        -------
        clip : np.ndarray, shape (n_labels,), float32
        taggram : np.ndarray, shape (T, n_labels), float32, or None
            The head applied to each patch alone.
        """
        emb = cache.embedding_as_float({"embedding": np.asarray(embedding), "kind": self.input_kind})
        clip = self._run_head(emb[None], np.ones((1, len(emb)), np.float32))[0]
        if not taggram:
            return clip, None
        return clip, self._run_head(emb[:, None], np.ones((len(emb), 1), np.float32))


def describe(model: str = "music") -> types.SimpleNamespace:
    """What a :class:`Head` is, read from its bundle without loading Keras (a command's checks before the network).

    Returns
    -------
    types.SimpleNamespace
        ``folder``, ``name``, ``meta``, ``model_hash``, ``labels``, ``thresholds``, ``task``, ``input_kind``: the
        attributes of :class:`Head` but its network.
    """
    folder = bundle.resolve(model)
    meta = bundle.read_meta(folder)
    labels, thresholds = bundle.read_labels(folder)
    return types.SimpleNamespace(
        folder=folder,
        name=os.fspath(model),
        meta=meta,
        model_hash=bundle.content_hash(folder),
        labels=labels,
        thresholds=thresholds,
        task=meta.get("task", "multilabel"),
        input_kind=registry.stored_kind(meta.get("embedding")),
    )


class Tagger:
    """A :class:`Head` and the extractor that feeds it (VGGish, or the features or patches it was trained on).

    Parameters
    ----------
    model : str
        A shipped bundle name (``'music'``, ``'genre10'``), a bundle folder or a run folder.
    weights : str, optional
        VGGish weights (see :class:`tagger.embedding.vggish.extractor.Embedder`).
    pca_params : str, optional
        ``vggish_pca_params.npz``; needed by heads trained on postprocessed embeddings.
    cache_dir : str, optional
        Reuse (and fill) an embedding cache: re-tagging with another head skips the network.
    extractor : tagger.embedding.extractor.Extractor, optional
        Share an already loaded extractor (its kind must be the head's).
    allow_other_embedding : bool
        Tag although the weights or PCA parameters differ from those the head
        was trained on (recorded in its ``bundle.json``); refused by default.
    **options
        Other :class:`tagger.embedding.vggish.extractor.Embedder` settings (``batch_size``, ``hop_seconds``, ``short_policy``,
        ``dtype``).

    Attributes
    ----------
    head : Head
    extractor : tagger.embedding.extractor.Extractor

    Examples
    --------
    The shipped ``genre10`` head on three seconds of a tone (``WEIGHTS`` and ``PCA``: paths of VGGish's weights
    and PCA parameters; without them, the weights come from TF Hub and the PCA from ``$TAGGER_VGGISH_PCA``):

    >>> import numpy as np
    >>> tagger = Tagger("genre10", weights=WEIGHTS, pca_params=PCA)
    >>> tone = np.sin(2 * np.pi * 440 * np.arange(3 * 16000) / 16000)
    >>> df = tagger.tag_arrays([(tone, 16000)], top_n=2)
    >>> list(df.columns)
    ['path', 'duration', 'tag_1', 'p_1', 'tag_2', 'p_2', 'tags']
    >>> df["tag_1"].iloc[0] in tagger.labels
    True

    Files and folders go to :meth:`tag` (a DataFrame, a row per clip) or :meth:`iter_tag` (results as they come).
    """

    def __init__(
        self,
        model: str = "music",
        *,
        weights: str | None = None,
        pca_params: str | None = None,
        cache_dir: str | None = None,
        extractor: Extractor | None = None,
        allow_other_embedding: bool = False,
        **options: Any,
    ) -> None:
        refuse_in_bootstrapping_child()  # an unguarded script re-run by a decode worker stops here, fast
        self._about = describe(model)
        self._head: Head | None = None
        self.cache_dir = cache_dir
        self._allow = allow_other_embedding
        if extractor is not None:
            if extractor.kind != self._about.input_kind:
                raise ParameterError(
                    f"model {model!r} takes {self._about.input_kind} inputs; the given extractor makes {extractor.kind}"
                )
            self._extractor = Deferred(lambda: extractor, None)
        else:
            settings = dict(weights=weights, pca_params=pca_params, **options)
            self._extractor = Deferred(
                lambda: for_head(self._about.meta, **settings), plan_for_head(self._about.meta, **settings)
            )
        if self._extractor.planned is not None:  # the network and the head load where a clip needs them
            check_trained_on(self._about, self._extractor.planned, allow=allow_other_embedding)
        else:
            self.extractor  # noqa: B018 - made now: its errors are the constructor's, as they always were

    @property
    def head(self) -> Head:
        """The :class:`Head`, loaded (Keras) the first time a clip is scored."""
        if self._head is None:
            self._head = Head(self._about.name, described=self._about)
        return self._head

    @property
    def extractor(self) -> Extractor:
        """What feeds the head, made (the network loaded) the first time it is needed."""
        made = self._extractor.made
        extractor = self._extractor.get()
        if not made and self._extractor.planned is None:
            check_trained_on(self._about, extractor, allow=self._allow)
        return extractor

    @property
    def planned(self) -> Planned | None:
        """What :attr:`extractor` records, known without making it (:func:`tagger.embedding.extractor.plan`), or None."""
        return None if self._extractor.made else self._extractor.planned

    # what a tag output records and formats: the head's, read from its bundle without Keras
    name = property(lambda self: self._about.name, doc="The model as given.")
    labels = property(lambda self: self._about.labels, doc="The head's vocabulary.")
    thresholds = property(lambda self: self._about.thresholds, doc="Per-tag thresholds, shape (n_labels,).")
    task = property(lambda self: self._about.task, doc="``'multilabel'`` or ``'singlelabel'``.")
    model_hash = property(lambda self: self._about.model_hash, doc="Content hash of the head's bundle.")
    folder = property(lambda self: self._about.folder, doc="The head's bundle or run folder.")

    def source_for(self, items: list[tuple[str, str]]) -> Extractor | Planned:
        """What makes the embeddings of a run over ``items``, its provenance fixed: the planned record where the
        cache serves every item under it (nothing to embed: the network is never loaded), else the extractor,
        settled on the items (its precision guard measured: :meth:`tagger.embedding.extractor.Extractor.settle`).
        """
        planned = self.planned
        if planned is not None and self.cache_dir is not None:
            if cache.CacheView(self.cache_dir, provenance.of_extractor(planned)).holds_all(items):
                return planned
        extractor = self.extractor
        extractor.settle([p for p, _ in items])  # the precision is fixed before the provenance is recorded
        return extractor

    def iter_tag(
        self,
        items: Iterable[tuple[str, str]],
        *,
        workers: int | None = None,
        taggram: bool = True,
        source: Extractor | Planned | None = None,
    ) -> Iterator[TagResult]:
        """Tag ``(path, track_id)`` pairs; yield :class:`TagResult` in input order.

        With a cache, the cache policy (:class:`tagger.embedding.cache.CacheView`)
        judges each entry against its audio's fingerprint and this tagger's
        provenance: hits are used (read again when their turn comes, so memory
        holds one clip's at a time; a raw entry is postprocessed on read when
        the head needs it); missing, stale, invalid or unreadable entries are
        embedded and stored (raw, so heads of either kind reuse them); entries
        the policy keeps (other settings, an older format) are embedded for the
        run and left as they are. A cache this process cannot write is used
        read-only. The cache is locked while it is written. Where the cache
        holds every item, the network is not loaded.

        ``source``: what :meth:`source_for` gave for a run these items are part of (default: its answer for them).
        """
        items = list(items)
        source = self.source_for(items) if source is None else source
        if self.cache_dir is None:
            nothing = [None] * len(items)  # no verdicts, no fingerprints: no cache
            yield from self._tag(items, nothing, nothing, None, source, workers=workers, taggram=taggram)
            return
        view = cache.CacheView(self.cache_dir, provenance.of_extractor(source))
        if not view.writable:
            yield from self._tag(items, *self._plan(items, view), view, source, workers=workers, taggram=taggram)
            return
        with locks.exclusive(locks.folder_lock_path(self.cache_dir), what=f"cache {self.cache_dir}"):
            yield from self._tag(items, *self._plan(items, view), view, source, workers=workers, taggram=taggram)

    def _plan(self, items: list[tuple[str, str]], view: Any) -> tuple[list[Any], list[Any]]:
        """The policy's verdict on each item's entry, and the audio fingerprints it judged by; warnings for the rest."""
        prints = [files.fingerprint(path) for path, _ in items]
        verdicts = [view.judge(track_id, print_) for (_, track_id), print_ in zip(items, prints)]
        kept = [v.message for v in verdicts if v.action == "keep" and v.message]
        if kept:
            log.warning(
                "%d entries of the cache %s were made with other settings or an older tagger (first: %s); they are"
                " neither used nor replaced: rebuild them with `tagger embed ... --overwrite`, or use another cache",
                len(kept),
                self.cache_dir,
                kept[0],
            )
        for v in verdicts:  # each stale, invalid or unreadable entry, by name
            if v.action == "replace" and v.message:
                log.warning("%s; re-embedded%s", v.message, "" if view.writable else " for this run (read-only cache)")
        return verdicts, prints

    def _tag(
        self,
        items: list[tuple[str, str]],
        verdicts: list[Any],
        prints: list[Any],
        view: Any,
        source: Extractor | Planned,
        *,
        workers: int | None,
        taggram: bool,
    ) -> Iterator[TagResult]:
        todo = [i for i in range(len(items)) if verdicts[i] is None or not verdicts[i].hit]
        if todo and isinstance(source, Planned):  # the cache held every item when the run began (source_for)
            made = self.extractor
            made.settle([items[i][0] for i in todo])
            if provenance.of_extractor(made) != provenance.of_extractor(source):
                raise DataError(
                    f"entries of the cache {self.cache_dir} went missing during the run, and the network now makes"
                    f" other embeddings than its output records ({provenance.describe(provenance.of_extractor(made))});"
                    " rerun"
                )
        stream = self.extractor.iter_files([items[i][0] for i in todo], workers=workers, raw=True) if todo else iter(())
        spec = registry.kind(self._about.input_kind)
        kind = spec.served_by or spec.name  # stored as the kind that serves it (raw, for a postprocessed head)
        not_stored = 0
        for i, (path, track_id) in enumerate(items):
            verdict = verdicts[i]
            if verdict is not None and verdict.hit:
                try:
                    entry = view.read(track_id)
                except DataError as exc:  # removed or replaced by another process since the check
                    yield TagResult(i, path, track_id, error=str(exc))
                    continue
                emb = cache.embedding_for(entry, source.postprocessor)
                times, duration, error = entry["timestamps"], entry["duration"], None
            else:
                r = next(stream)
                for text in r.warnings:
                    log.warning(text)
                emb, times, duration, error = r.embedding, r.timestamps, r.duration, r.error
                if r.ok and view is not None and verdict.action != "keep":
                    if view.writable:
                        view.store(
                            track_id,
                            cache.make_entry(
                                emb,
                                times,
                                kind=kind,
                                frontend=source.frontend,
                                weights=source.network_id,
                                source=path,
                                fingerprint=prints[i],
                                duration=duration,
                                short_policy=source.short_policy,
                            ),
                        )
                    else:
                        not_stored += 1
                if r.ok:
                    emb = self.extractor.finalize(emb)
            if error is not None:
                yield TagResult(i, path, track_id, error=error)
                continue
            clip, grams = self.head.scores(emb, taggram=taggram)
            yield TagResult(i, path, track_id, duration=duration, timestamps=times, probabilities=clip, taggram=grams)
        if not_stored:
            log.warning(
                "the cache %s is read-only: %d clips not in it were embedded for this run but not stored",
                self.cache_dir,
                not_stored,
            )

    def tag(
        self,
        inputs: Iterable[str] | str,
        *,
        top_n: int = 5,
        threshold: float | None = None,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        workers: int | None = None,
        root: str | None = None,
    ) -> pd.DataFrame:
        """Tag files and folders; a DataFrame with one row per good clip (failures in ``df.attrs['errors']``).

        ``root``: the folder cache track ids are relative to (default: the working folder).
        """
        import pandas as pd

        rows, errors = [], []
        items = files.collect(inputs, include=include, exclude=exclude, root=root)
        for r in self.iter_tag(items, workers=workers, taggram=False):
            if r.ok:
                rows.append(writer.csv_row(self.head, r, top_n=top_n, threshold=threshold))
            else:
                errors.append((r.path, r.error))
        df = pd.DataFrame(rows)
        df.attrs["errors"] = errors
        return df

    def tag_arrays(
        self,
        arrays: Iterable[tuple[np.ndarray, int]],
        *,
        top_n: int = 5,
        threshold: float | None = None,
        names: list[str] | None = None,
    ) -> pd.DataFrame:
        """Tag in-memory clips given as ``(y, sr)`` pairs; a DataFrame like :meth:`tag`: one row per clip that could
        be tagged, and ``(name, reason)`` for each that could not (an empty or non-finite array, a bad rate) in
        ``df.attrs['errors']``."""
        import pandas as pd

        rows, errors = [], []
        for i, (y, sr) in enumerate(arrays):
            name = names[i] if names else f"<array {i}>"
            try:
                emb, times = self.extractor.embed(y, sr)
                if len(emb) == 0:
                    raise DataError(
                        "no audio to tag (an empty array, or shorter than a patch with short_policy 'skip')"
                    )
            except (AudioError, DataError, ParameterError) as exc:
                errors.append((name, str(exc)))
                continue
            clip, taggram = self.head.scores(emb, taggram=False)
            duration = len(y) / float(sr) if np.ndim(y) == 1 else max(np.shape(y)) / float(sr)
            result = TagResult(i, name, duration=duration, timestamps=times, probabilities=clip, taggram=taggram)
            rows.append(writer.csv_row(self.head, result, top_n=top_n, threshold=threshold))
        df = pd.DataFrame(rows)
        df.attrs["errors"] = errors
        return df

    def clip_scores(
        self, items: list[tuple[str, str]], *, workers: int | None = None
    ) -> tuple[list[str], np.ndarray, list[Any]]:
        """Clip probabilities of ``(path, track_id)`` pairs, in input order (what ``tagger evaluate --model`` scores).

        Returns
        -------
        paths : list of str
            The clips tagged.
        scores : np.ndarray, shape (len(paths), n_labels), float32
        failed : list of (str, str)
            Path and reason of each clip that could not be tagged.

        Raises
        ------
        DataError
            No clip could be tagged (the first reasons are in the message).
        """
        paths, rows, failed = [], [], []
        for r in self.iter_tag(items, workers=workers, taggram=False):
            if r.ok:
                paths.append(r.path)
                rows.append(r.probabilities)
            else:
                failed.append((r.path, r.error))
        if not rows:
            raise DataError("no clip could be tagged: " + "; ".join(f"{p}: {e}" for p, e in failed[:3]))
        return paths, np.stack(rows), failed


def check_trained_on(head: Any, extractor: Extractor | Planned, *, allow: bool = False) -> None:
    """Refuse a head fed by embeddings other than those it was trained on (the provenance in its ``bundle.json``).

    ``allow``: warn instead (``--allow-other-embedding``).
    """
    trained = head.meta.get("provenance")
    diff = provenance.head_differences(trained, provenance.of_extractor(extractor)) if trained else []
    if diff and not allow:
        raise ParameterError(
            f"model {head.name!r} was trained on embeddings of other settings ({'; '.join(diff)}): its tags would be"
            " wrong; pass the weights and PCA parameters it was trained on, or --allow-other-embedding to tag anyway"
        )
    if diff:
        log.warning("model %r was trained on other embeddings (%s); tagging anyway", head.name, "; ".join(diff))
