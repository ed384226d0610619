"""The Beam pipeline's steps: DoFns, the VGGish model handler and the text coder (imported only when Beam runs).

Each step calls the functions ``tagger embed`` and ``tagger tag`` call, found through the model registry
(:mod:`tagger.embedding.registry`): decoding (the model's ``decode`` job; VGGish's
:func:`tagger.embedding.vggish.frontend.decode_messages`), the network (its extractor; VGGish's
:class:`tagger.embedding.vggish.extractor.Embedder`), the postprocessor of a kind, the cache policy
(:class:`tagger.embedding.cache.CacheView`) and the head and its rows
(:class:`tagger.tagging.api.Head`, :mod:`tagger.tagging.writer`).
"""

import json
import logging
import os
import tempfile

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from ..embedding import cache, registry
from ..records import delimited_line
from ..tables import parquet_path_columns
from ..tagging import writer
from ..tagging.api import Head
from ..tagging.results import TagResult
from . import remote

__all__ = ["NAMESPACE", "CHUNK_PATCHES", "Plan", "Decode", "ExtractorModelHandler", "Assemble", "TagRows", "TEXT_CODER"]

log = logging.getLogger(__name__)

NAMESPACE = "tagger"  # of the pipeline's counters
CHUNK_PATCHES = 32  # patches per pipeline element between decoding and the network


class Plan(beam.DoFn):
    """(path, track_id) -> to decode, or (for tag) a cache hit ready for the head; done entries are counted.

    The cache policy's verdicts (:class:`tagger.embedding.cache.CacheView`), as ``tagger embed`` and
    ``tagger tag`` apply them: a kept entry (other settings, older format) is never replaced; ``embed``
    lists it in the errors file, ``tag`` embeds the clip for its row without storing it.
    """

    def __init__(self, settings, *, keep_hits):
        self.settings, self.keep_hits = settings, keep_hits
        self.skipped = Metrics.counter(NAMESPACE, "skipped")

    def setup(self):
        self.view = None if self.settings["cache_dir"] is None else remote.view(self.settings)

    def process(self, item):
        path, track_id = item
        print_ = remote.fingerprint(path)
        verdict = None if self.view is None else self.view.judge(track_id, print_)
        if verdict is not None and verdict.hit:
            self.skipped.inc()
            if self.keep_hits:
                yield beam.pvalue.TaggedOutput("hits", (track_id, {"path": path, "entry": verdict.entry}))
            return
        store = verdict is not None and verdict.action != "keep"
        if verdict is not None and verdict.action == "keep" and not self.keep_hits:
            yield beam.pvalue.TaggedOutput(
                "kept", (path, f"{verdict.message}; not replaced: rerun with --overwrite, or use another cache")
            )
            return
        if verdict is not None and verdict.action == "replace":
            log.warning("%s; re-embedding it", verdict.message)
        yield (path, track_id, print_, store)


class Decode(beam.DoFn):
    """A file -> chunks of patches keyed by (track id, chunk), its metadata, or its error."""

    def __init__(self, settings):
        self.settings = settings

    def setup(self):
        self.decode = registry.resolve(_model(self.settings).decode)

    def process(self, item):
        path, track_id, print_, store = item
        local, tmp = path, None
        try:
            if remote.is_remote(path):
                data = remote.read_bytes(path)
                fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(path)[1])
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                local = tmp
        except Exception as exc:  # noqa: BLE001 - one bad file never fails the job
            local = None
            yield beam.pvalue.TaggedOutput("errors", (path, f"{type(exc).__name__}: {exc}"))
        if local is not None:
            yield from self._decode(path, local, tmp, track_id, print_, store)

    def _decode(self, path, local, tmp, track_id, print_, store):
        try:
            times, k = [], 0
            for message in self.decode(
                0,
                local,
                hop_seconds=self.settings["hop_seconds"],
                short_policy=self.settings["short_policy"],
                chunk_patches=CHUNK_PATCHES,
            ):
                if message[0] == "patches":
                    for start in range(0, len(message[2]), CHUNK_PATCHES):
                        yield ((track_id, k), message[2][start : start + CHUNK_PATCHES])
                        k += 1
                    times.append(message[3])
                elif message[0] == "done":
                    for text in message[3]:
                        log.warning(text)
                    meta = {
                        "path": path,
                        "store": store,
                        "fingerprint": print_,
                        "duration": message[2],
                        "chunks": k,
                        "timestamps": np.concatenate(times) if times else np.zeros(0),
                    }
                    yield beam.pvalue.TaggedOutput("meta", (track_id, meta))
                else:
                    yield beam.pvalue.TaggedOutput("errors", (path, message[2]))
        finally:
            if tmp is not None:
                os.unlink(tmp)


class ExtractorModelHandler(ModelHandler):
    """RunInference handler: the model's network (VGGish: any weight form tagger reads) on batches of patch chunks.

    The network is loaded once per worker process (``load_model``) and
    shared by its threads; partial batches are padded to one shape.
    """

    def __init__(self, settings):
        per_batch = max(1, settings["batch_size"] // CHUNK_PATCHES)
        super().__init__(min_batch_size=1, max_batch_size=per_batch)
        self.settings = settings

    def load_model(self):
        s = self.settings
        spec = registry.kind(s["kind"])
        embedder = registry.make(
            spec.served_by or spec.name,  # the network's own output: a postprocessed run postprocesses in Assemble
            weights=s["weights"],
            batch_size=s["batch_size"],
            hop_seconds=s["hop_seconds"],
            short_policy=s["short_policy"],
            dtype=s["dtype"],
            guard_tolerance=s.get("guard_tolerance"),
            frontend_kind="reference",  # the decode workers make the reference frontend's patches (settings_of)
        )
        # the settings' provenance is the job's: this worker's precision guard measures its first batch, and
        # a trip stops the job (DataError) rather than write float32 entries the settings call bfloat16
        embedder.settle(())
        return embedder

    def run_inference(self, batch, model, inference_args=None):
        sizes = np.cumsum([len(chunk) for chunk in batch])[:-1]
        out = model.run(np.concatenate(batch))
        return [PredictionResult(chunk, emb) for chunk, emb in zip(batch, np.split(out, sizes))]

    def get_metrics_namespace(self):
        return "tagger_vggish"


def _model(settings):
    """The registry's model of a job's settings (the model of its kind)."""
    return registry.model(registry.kind(settings["kind"]).model)


class Assemble(beam.DoFn):
    """Chunks of one track -> its cache entry (written when a cache is set); yields (track id, result)."""

    def __init__(self, settings):
        self.settings = settings
        self.embedded = Metrics.counter(NAMESPACE, "embedded")

    def setup(self):
        post = registry.kind(self.settings["kind"]).postprocessor if self.settings["postprocess"] else None
        self.post = registry.resolve(post)(self.settings["pca_params"]) if post else None
        self.view = None if self.settings["cache_dir"] is None else remote.view(self.settings)

    def process(self, element):
        track_id, groups = element
        if not groups["meta"]:
            return []  # failed while decoding: in errors.tsv
        meta = groups["meta"][0]
        chunks = dict(groups["embeddings"])
        if len(chunks) != meta["chunks"]:
            return [
                beam.pvalue.TaggedOutput("errors", (meta["path"], f"{len(chunks)} of {meta['chunks']} chunks embedded"))
            ]
        raw = np.concatenate([chunks[k] for k in range(meta["chunks"])]).astype(np.float32)
        s = self.settings
        emb = self.post(raw) if self.post is not None else raw
        entry = cache.make_entry(
            emb,
            meta["timestamps"],
            kind=s["kind"],
            pca=None if self.post is None else self.post.id,
            frontend=s["frontend"],
            weights=s["network_id"],
            source=meta["path"],
            fingerprint=meta["fingerprint"],
            duration=meta["duration"],
            short_policy=s["short_policy"],
        )
        if self.view is not None and meta["store"]:
            self.view.store(track_id, entry)
        self.embedded.inc()
        return [(track_id, {"path": meta["path"], "entry": entry})]


class TagRows(beam.DoFn):
    """(track id, entry) -> one output line (CSV or JSON) of the head's tags."""

    def __init__(self, model, pca_params, fmt, top_n, threshold):
        self.model, self.pca_params, self.fmt, self.top_n, self.threshold = model, pca_params, fmt, top_n, threshold
        self.tagged = Metrics.counter(NAMESPACE, "tagged")

    def setup(self):
        self.head = Head(self.model)
        post = registry.kind(self.head.input_kind).postprocessor
        self.post = registry.resolve(post)(self.pca_params) if post else None
        self.fieldnames = writer.row_fields(self.top_n)

    def process(self, element):
        track_id, item = element
        entry = item["entry"]
        emb = cache.embedding_for(entry, self.post)
        clip, _ = self.head.scores(emb, taggram=False)
        result = TagResult(
            0,
            item["path"],
            track_id,
            duration=entry["duration"],
            timestamps=entry["timestamps"],
            probabilities=clip,
        )
        row = writer.csv_row(self.head, result, top_n=self.top_n, threshold=self.threshold)
        self.tagged.inc()
        if self.fmt == "parquet":
            yield {**row, **parquet_path_columns(item["path"])}
        elif self.fmt == "csv":
            yield delimited_line([row.get(k, "") for k in self.fieldnames])
        else:
            yield json.dumps(writer.json_record(self.head, result, row))


class SurrogateEscapeCoder(beam.coders.Coder):
    """Lines written as UTF-8 with file names that are not UTF-8 kept byte for byte (as :data:`tagger.records.TEXT`)."""

    def encode(self, value):
        return value.encode("utf-8", "surrogateescape")

    def decode(self, value):
        return value.decode("utf-8", "surrogateescape")

    def is_deterministic(self):
        return True


TEXT_CODER = SurrogateEscapeCoder()
