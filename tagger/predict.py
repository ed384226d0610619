"""Tagging clips with a head: the :class:`Tagger` API and resumable writers for ``tagger tag``.

>>> tagger = Tagger("music", weights="vggish_model.ckpt", pca_params="vggish_pca_params.npz")
>>> df = tagger.tag(["song.mp3", "folder/"])          # one row per clip
>>> df = tagger.tag_arrays([(y, sr)])                 # arrays work too
"""

import csv
import json
import logging
import os

import numpy as np

from . import bundle, cache, files
from .exceptions import DataError, ParameterError

__all__ = ["Tagger", "TagResult", "tag_to_file", "FORMATS"]

log = logging.getLogger(__name__)
FORMATS = ("csv", "jsonl")


class TagResult:
    """Tags of one clip: path, duration, clip probabilities, per-patch taggram, or an error."""

    __slots__ = ("index", "path", "track_id", "duration", "timestamps", "probabilities", "taggram", "error")

    def __init__(self, index, path, track_id=None, duration=None, timestamps=None, probabilities=None, taggram=None, error=None):
        self.index, self.path, self.track_id, self.duration = index, path, track_id, duration
        self.timestamps, self.probabilities, self.taggram, self.error = timestamps, probabilities, taggram, error

    @property
    def ok(self):
        return self.error is None


class Tagger:
    """A head plus VGGish, loaded once.

    Parameters
    ----------
    model : str
        A shipped bundle name (``'music'``, ``'genre10'``), a bundle folder or a run folder.
    weights : str, optional
        VGGish weights (see :class:`tagger.embed.Embedder`).
    pca_params : str, optional
        ``vggish_pca_params.npz``; needed by heads trained on postprocessed embeddings.
    cache_dir : str, optional
        Reuse (and fill) an embedding cache: re-tagging with another head skips the network.
    embedder : tagger.embed.Embedder, optional
        Share an already loaded network (its postprocessing must fit the head).
    **options
        Other :class:`tagger.embed.Embedder` settings (``batch_size``, ``hop_seconds``, ``short_policy``).
    """

    def __init__(self, model="music", *, weights=None, pca_params=None, cache_dir=None, embedder=None, **options):
        import keras

        from . import layers  # noqa: F401 - registers custom layers
        from .embed import Embedder

        self.folder = bundle.resolve(model)
        self.meta = bundle.read_meta(self.folder)
        self.head = keras.saving.load_model(os.path.join(self.folder, "model.keras"))
        self.labels, self.thresholds = bundle.read_labels(self.folder)
        self.task = self.meta.get("task", "multilabel")
        postprocess = self.meta.get("embedding") == "postprocessed"
        if embedder is None:
            embedder = Embedder(weights, postprocess=postprocess, pca_params=pca_params, **options)
        elif (embedder.postprocessor is not None) != postprocess:
            raise ParameterError(f"model {model!r} expects {'postprocessed' if postprocess else 'raw'} embeddings; the given embedder differs")
        self.embedder = embedder
        self.cache_dir = cache_dir
        import tensorflow as tf

        head = self.head
        spec = (tf.TensorSpec([None, None, 128], tf.float32), tf.TensorSpec([None, None], tf.float32))

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
        return clip, self._run_head(emb[:, None, :], np.ones((len(emb), 1), np.float32)).numpy()

    def _cached(self, track_id):
        if self.cache_dir is None or track_id is None:
            return None
        path = cache.entry_path(self.cache_dir, track_id)
        if not os.path.exists(path):
            return None
        try:
            return cache.read_entry(path, frontend=self.embedder.frontend, weights=self.embedder.weights_id)
        except DataError as exc:
            log.warning("%s; re-embedding", exc)
            return None

    def iter_tag(self, items, *, workers=None, taggram=True):
        """Tag ``(path, track_id)`` pairs; yield :class:`TagResult` in input order.

        Cached embeddings are used when a cache is set (checked first, read
        again only when their turn comes, so memory holds one clip's at a
        time); new ones are written to it.
        """
        items = list(items)
        cached = {i for i, (_, track_id) in enumerate(items) if self._cached(track_id) is not None}
        todo = [i for i in range(len(items)) if i not in cached]
        stream = self.embedder.iter_files([items[i][0] for i in todo], workers=workers) if todo else iter(())
        for i, (path, track_id) in enumerate(items):
            if i in cached:
                entry = self._cached(track_id)
                if entry is None:  # removed or replaced by another process since the check
                    yield TagResult(i, path, track_id, error=f"cache entry for {track_id} changed during the run; rerun")
                    continue
                emb, times, duration, error = entry["embedding"], entry["timestamps"], entry["duration"], None
            else:
                r = next(stream)
                for text in r.warnings:
                    log.warning(text)
                emb, times, duration, error = r.embedding, r.timestamps, r.duration, r.error
                if r.ok and self.cache_dir is not None and track_id is not None:
                    cache.write_entry(self.cache_dir, track_id, cache.make_entry(
                        emb, times, frontend=self.embedder.frontend, weights=self.embedder.weights_id,
                        source=path, duration=duration))
            if error is not None:
                yield TagResult(i, path, track_id, error=error)
                continue
            clip, grams = self.scores(emb, taggram=taggram)
            yield TagResult(i, path, track_id, duration=duration, timestamps=times, probabilities=clip, taggram=grams)

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
        row["tags"] = "|".join(self.labels[j] for j in chosen)
        return row

    def tag(self, inputs, *, top_n=5, threshold=None, include=(), exclude=(), workers=None):
        """Tag files and folders; a DataFrame with one row per good clip (failures in ``df.attrs['errors']``)."""
        import pandas as pd

        rows, errors = [], []
        for r in self.iter_tag(files.collect(inputs, include=include, exclude=exclude), workers=workers, taggram=False):
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
            rows.append(self.rows(TagResult(i, name, duration=duration, timestamps=times, probabilities=clip, taggram=taggram), top_n=top_n, threshold=threshold))
        return pd.DataFrame(rows)


def _complete_lines(path):
    """Lines of a file, dropping a last line cut off by a kill (and truncating it away)."""
    if not os.path.exists(path):
        return []
    with open(path, "rb+") as f:
        data = f.read()
        keep = data[: data.rfind(b"\n") + 1]
        if len(keep) != len(data):
            f.seek(0)
            f.truncate(len(keep))
    return keep.decode("utf-8").splitlines()


def tag_to_file(tagger, inputs, out, *, fmt="csv", top_n=5, threshold=None, taggram_dir=None, errors_file=None,
                include=(), exclude=(), workers=None, progress=None):
    """Tag inputs into ``out``, incrementally and resumably.

    Rows are appended (and flushed) as clips finish, in input order; a rerun
    with the same arguments skips clips already in ``out`` or in the errors
    file and ends with the same files as an uninterrupted run.

    Returns
    -------
    dict
        total, tagged, skipped (done before), failed, errors_file.
    """
    from tqdm.auto import tqdm

    if fmt not in FORMATS:
        raise ParameterError(f"format={fmt!r} must be one of {FORMATS}")
    items = files.collect(inputs, include=include, exclude=exclude)
    if not items:
        raise DataError(f"no audio files found in {[os.fspath(i) for i in inputs]}")
    errors_file = errors_file or os.fspath(out) + ".errors.tsv"
    done = set()
    out_lines = _complete_lines(out)
    if fmt == "csv" and out_lines:
        done |= {row["path"] for row in csv.DictReader(out_lines)}
    elif out_lines:
        done |= {json.loads(line)["path"] for line in out_lines}
    err_lines = _complete_lines(errors_file)
    done |= {line.split("\t", 1)[0] for line in err_lines[1:]}
    todo = [(p, t) for p, t in items if p not in done]
    summary = {"total": len(items), "tagged": 0, "skipped": len(items) - len(todo), "failed": len(err_lines[1:]), "errors_file": errors_file}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fieldnames = ["path", "duration"] + [f"{k}_{i}" for i in range(1, top_n + 1) for k in ("tag", "p")] + ["tags"]
    bar = tqdm(total=len(todo), unit="clip", desc="tag", disable=(not progress) if progress is not None else None)
    with open(out, "a", newline="", encoding="utf-8") as fout, open(errors_file, "a", newline="", encoding="utf-8") as ferr:
        writer = csv.DictWriter(fout, fieldnames=fieldnames, extrasaction="ignore")
        if fmt == "csv" and not out_lines:
            writer.writeheader()
        if not err_lines:
            ferr.write("path\terror\n")
        for r in tagger.iter_tag(todo, workers=workers, taggram=bool(taggram_dir)):
            if r.ok:
                if fmt == "csv":
                    writer.writerow(tagger.rows(r, top_n=top_n, threshold=threshold))
                else:
                    record = {"path": r.path, "duration": round(float(r.duration), 3),
                              "probabilities": {t: round(float(p), 6) for t, p in zip(tagger.labels, r.probabilities)}}
                    record["tags"] = tagger.rows(r, top_n=top_n, threshold=threshold)["tags"].split("|")
                    fout.write(json.dumps(record) + "\n")
                if taggram_dir:
                    target = os.path.join(taggram_dir, (r.track_id or os.path.basename(r.path)) + ".npz")
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    np.savez_compressed(target, timestamps=r.timestamps, taggram=r.taggram, labels=np.array(tagger.labels), probabilities=r.probabilities)
                summary["tagged"] += 1
            else:
                ferr.write(f"{r.path}\t{r.error}\n")
                summary["failed"] += 1
            fout.flush()
            ferr.flush()
            bar.update(1)
            bar.set_postfix(failed=summary["failed"], refresh=False)
    bar.close()
    if summary["failed"] == 0 and os.path.exists(errors_file):
        os.unlink(errors_file)
    return summary
