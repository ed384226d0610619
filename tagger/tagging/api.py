"""Tagging clips with a head: the :class:`Head` (embeddings -> tags) and the :class:`Tagger` API.

>>> tagger = Tagger("music", weights="vggish_model.ckpt", pca_params="vggish_pca_params.npz")
>>> df = tagger.tag(["song.mp3", "folder/"])          # one row per clip
>>> df = tagger.tag_arrays([(y, sr)])                 # arrays work too
"""

import hashlib
import logging
import os

import numpy as np

from .. import locks
from ..embedding import cache, files, provenance
from ..exceptions import DataError, ParameterError
from ..training import bundle
from ..training.dataset import SEPARATOR

__all__ = ["Head", "Tagger", "TagResult", "check_trained_on"]

log = logging.getLogger(__name__)


class TagResult:
    """Tags of one clip: path, duration, clip probabilities, per-patch taggram, or an error."""

    __slots__ = ("index", "path", "track_id", "duration", "timestamps", "probabilities", "taggram", "error")

    def __init__(
        self, index, path, track_id=None, duration=None, timestamps=None, probabilities=None, taggram=None, error=None
    ):
        self.index, self.path, self.track_id, self.duration = index, path, track_id, duration
        self.timestamps, self.probabilities, self.taggram, self.error = timestamps, probabilities, taggram, error

    @property
    def ok(self):
        return self.error is None


class Head:
    """A trained head with its labels and thresholds: clip embeddings -> probabilities -> rows.

    Parameters
    ----------
    model : str
        A shipped bundle name (``'music'``, ``'genre10'``), a bundle folder or a run folder.
    """

    def __init__(self, model="music"):
        import tensorflow as tf

        from ..training.heads import load_head

        self.folder = bundle.resolve(model)
        self.name = os.fspath(model)
        self.meta = bundle.read_meta(self.folder)
        self.model_hash = _bundle_hash(self.folder)
        self.head = load_head(self.folder, compile=False)
        self.labels, self.thresholds = bundle.read_labels(self.folder)
        self.task = self.meta.get("task", "multilabel")
        self.postprocess = self.meta.get("embedding") == "postprocessed"
        # what the head takes: raw or postprocessed embeddings, handcrafted features, or log-mel patches
        self.input_kind = self.meta.get("embedding", "raw")
        self.features = self.input_kind == "features"
        head = self.head
        item = [int(d) for d in head.inputs[0].shape[2:]]  # [128] (VGGish), [57] (features), [96, 64] (log-mel patches)
        spec = (tf.TensorSpec([None, None, *item], tf.float32), tf.TensorSpec([None, None], tf.float32))

        @tf.function(input_signature=spec)
        def run_head(x, m):  # one trace for every clip length: no per-clip eager overhead
            return head((x, m), training=False)

        self._run_head = run_head

    def scores(self, embedding, *, taggram=True):
        """Clip probabilities and the per-patch taggram of one clip.

        Parameters
        ----------
        embedding : np.ndarray, shape (T, 128)
            As the embedder returns it (uint8 when postprocessed).
        taggram : bool
            Also compute the taggram.

        Returns
        -------
        clip : np.ndarray, shape (n_labels,), float32
        taggram : np.ndarray, shape (T, n_labels), float32, or None
            The head applied to each patch alone.
        """
        emb = cache.embedding_as_float({"embedding": np.asarray(embedding)})
        clip = self._run_head(emb[None], np.ones((1, len(emb)), np.float32)).numpy()[0]
        if not taggram:
            return clip, None
        return clip, self._run_head(emb[:, None], np.ones((len(emb), 1), np.float32)).numpy()

    def rows(self, result, *, top_n=5, threshold=None):
        """A result as a flat dict: path, duration, top-N tags with probabilities, tags over threshold."""
        p = result.probabilities
        order = np.argsort(-p, kind="stable")[:top_n]
        row = {"path": result.path, "duration": round(float(result.duration), 3)}
        for k, j in enumerate(order, 1):
            row[f"tag_{k}"] = self.labels[j]
            row[f"p_{k}"] = round(float(p[j]), 4)
        if self.task == "singlelabel":
            chosen = [int(np.argmax(p))]
        else:
            cut = self.thresholds if threshold is None else np.full(len(p), threshold)
            chosen = [j for j in np.argsort(-p, kind="stable") if p[j] >= cut[j]]
        row["tags"] = SEPARATOR.join(self.labels[j] for j in chosen)
        return row

    def record(self, result, row):
        """A result as one JSONL record: path, duration, every tag's probability, the chosen tags (from ``row``)."""
        return {
            "path": result.path,
            "duration": round(float(result.duration), 3),
            "probabilities": {t: round(float(p), 6) for t, p in zip(self.labels, result.probabilities)},
            "tags": row["tags"].split(SEPARATOR) if row["tags"] else [],
        }


class Tagger(Head):
    """A head plus VGGish, loaded once (or plus the handcrafted features, for a head trained on them).

    Parameters
    ----------
    model : str
        A shipped bundle name (``'music'``, ``'genre10'``), a bundle folder or a run folder.
    weights : str, optional
        VGGish weights (see :class:`tagger.embedding.embed.Embedder`).
    pca_params : str, optional
        ``vggish_pca_params.npz``; needed by heads trained on postprocessed embeddings.
    cache_dir : str, optional
        Reuse (and fill) an embedding cache: re-tagging with another head skips the network.
    embedder : tagger.embedding.embed.Embedder, optional
        Share an already loaded network (its postprocessing must fit the head).
    allow_other_embedding : bool
        Tag although the weights or PCA parameters differ from those the head
        was trained on (recorded in its ``bundle.json``); refused by default.
    **options
        Other :class:`tagger.embedding.embed.Embedder` settings (``batch_size``, ``hop_seconds``, ``short_policy``).
    """

    def __init__(
        self,
        model="music",
        *,
        weights=None,
        pca_params=None,
        cache_dir=None,
        embedder=None,
        allow_other_embedding=False,
        **options,
    ):
        from ..embedding.pipeline import refuse_in_bootstrapping_child

        refuse_in_bootstrapping_child()  # an unguarded script re-run by a decode worker stops here, fast
        from ..embedding.embed import Embedder

        super().__init__(model)
        if self.input_kind in ("features", "melspec"):  # no VGGish: weights and network options do not apply
            if embedder is not None and embedder.kind != self.input_kind:
                raise ParameterError(
                    f"model {model!r} takes {self.input_kind} inputs; the given embedder makes {embedder.kind}"
                )
            if embedder is None and self.input_kind == "features":
                from ..features import FeatureExtractor

                embedder = FeatureExtractor()
            elif embedder is None:
                from ..embedding.spectrogram import PatchExtractor

                kept = {k: v for k, v in options.items() if k == "short_policy"}
                embedder = PatchExtractor.for_frontend(self.meta.get("frontend"), **kept)  # the patches it trained on
        elif embedder is None:
            embedder = Embedder(weights, postprocess=self.postprocess, pca_params=pca_params, **options)
        elif (embedder.postprocessor is not None) != self.postprocess:
            raise ParameterError(
                f"model {model!r} expects {'postprocessed' if self.postprocess else 'raw'} embeddings;"
                " the given embedder differs"
            )
        self.embedder = embedder
        self.cache_dir = cache_dir
        check_trained_on(self, embedder, allow=allow_other_embedding)

    def iter_tag(self, items, *, workers=None, taggram=True):
        """Tag ``(path, track_id)`` pairs; yield :class:`TagResult` in input order.

        With a cache, the cache policy (:class:`tagger.embedding.cache.CacheView`)
        judges each entry against its audio's fingerprint and this tagger's
        provenance: hits are used (read again when their turn comes, so memory
        holds one clip's at a time; a raw entry is postprocessed on read when
        the head needs it); missing, stale, invalid or unreadable entries are
        embedded and stored (raw, so heads of either kind reuse them); entries
        the policy keeps (other settings, an older format) are embedded for the
        run and left as they are. A cache this process cannot write is used
        read-only. The cache is locked while it is written.
        """
        items = list(items)
        if self.cache_dir is None:
            yield from self._tag(items, [None] * len(items), None, None, workers=workers, taggram=taggram)
            return
        view = cache.CacheView(self.cache_dir, provenance.of_extractor(self.embedder))
        if not view.writable:
            yield from self._tag(items, *self._plan(items, view), view, workers=workers, taggram=taggram)
            return
        with locks.exclusive(locks.folder_lock_path(self.cache_dir), what=f"cache {self.cache_dir}"):
            yield from self._tag(items, *self._plan(items, view), view, workers=workers, taggram=taggram)

    def _plan(self, items, view):
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

    def _tag(self, items, verdicts, prints, view, *, workers, taggram):
        todo = [i for i in range(len(items)) if verdicts[i] is None or not verdicts[i].hit]
        stream = self.embedder.iter_files([items[i][0] for i in todo], workers=workers, raw=True) if todo else iter(())
        kind = self.input_kind if self.input_kind in ("features", "melspec") else "raw"
        not_stored = 0
        for i, (path, track_id) in enumerate(items):
            verdict = verdicts[i]
            if verdict is not None and verdict.hit:
                try:
                    entry = view.read(track_id)
                except DataError as exc:  # removed or replaced by another process since the check
                    yield TagResult(i, path, track_id, error=str(exc))
                    continue
                emb = cache.embedding_for(entry, self.embedder.postprocessor)
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
                                frontend=self.embedder.frontend,
                                weights=self.embedder.network_id,
                                source=path,
                                fingerprint=prints[i],
                                duration=duration,
                                short_policy=self.embedder.short_policy,
                            ),
                        )
                    else:
                        not_stored += 1
                if r.ok:
                    emb = self.embedder.finalize(emb)
            if error is not None:
                yield TagResult(i, path, track_id, error=error)
                continue
            clip, grams = self.scores(emb, taggram=taggram)
            yield TagResult(i, path, track_id, duration=duration, timestamps=times, probabilities=clip, taggram=grams)
        if not_stored:
            log.warning(
                "the cache %s is read-only: %d clips not in it were embedded for this run but not stored",
                self.cache_dir,
                not_stored,
            )

    def tag(self, inputs, *, top_n=5, threshold=None, include=(), exclude=(), workers=None, root=None):
        """Tag files and folders; a DataFrame with one row per good clip (failures in ``df.attrs['errors']``).

        ``root``: the folder cache track ids are relative to (default: the working folder).
        """
        import pandas as pd

        rows, errors = [], []
        items = files.collect(inputs, include=include, exclude=exclude, root=root)
        for r in self.iter_tag(items, workers=workers, taggram=False):
            if r.ok:
                rows.append(self.rows(r, top_n=top_n, threshold=threshold))
            else:
                errors.append((r.path, r.error))
        df = pd.DataFrame(rows)
        df.attrs["errors"] = errors
        return df

    def tag_arrays(self, arrays, *, top_n=5, threshold=None, names=None):
        """Tag in-memory clips given as ``(y, sr)`` pairs; a DataFrame like :meth:`tag`."""
        import pandas as pd

        rows = []
        for i, (y, sr) in enumerate(arrays):
            emb, times = self.embedder.embed(y, sr)
            clip, taggram = self.scores(emb, taggram=False)
            name = names[i] if names else f"<array {i}>"
            duration = len(y) / float(sr) if np.ndim(y) == 1 else max(np.shape(y)) / float(sr)
            rows.append(
                self.rows(
                    TagResult(i, name, duration=duration, timestamps=times, probabilities=clip, taggram=taggram),
                    top_n=top_n,
                    threshold=threshold,
                )
            )
        return pd.DataFrame(rows)


def check_trained_on(head, embedder, *, allow=False):
    """Refuse a head fed by embeddings other than those it was trained on (the provenance in its ``bundle.json``).

    ``allow``: warn instead (``--allow-other-embedding``).
    """
    trained = head.meta.get("provenance")
    diff = provenance.head_differences(trained, provenance.of_extractor(embedder)) if trained else []
    if diff and not allow:
        raise ParameterError(
            f"model {head.name!r} was trained on embeddings of other settings ({'; '.join(diff)}): its tags would be"
            " wrong; pass the weights and PCA parameters it was trained on, or --allow-other-embedding to tag anyway"
        )
    if diff:
        log.warning("model %r was trained on other embeddings (%s); tagging anyway", head.name, "; ".join(diff))


def _bundle_hash(folder):
    """SHA-256 (first 16 hex digits) of what decides a head's output: model, labels, thresholds, bundle.json."""
    digest = hashlib.sha256()
    for name in ("model.keras", "labels.json", "thresholds.json", "bundle.json"):
        path = os.path.join(folder, name)
        digest.update(name.encode())
        if os.path.exists(path):
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]
