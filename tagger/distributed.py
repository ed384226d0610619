"""Corpus scale: ``tagger embed`` and ``tagger tag`` as an Apache Beam pipeline.

The DirectRunner runs it on this machine; Google Cloud Dataflow (or any Beam
runner) runs it on many. The pipeline adds distribution, not a second
implementation: files are decoded and patched by
:func:`tagger.embedding.decode.decode_messages` (the workers of ``tagger embed``),
patches from many files are batched by ``RunInference``'s own batching and
run through :class:`tagger.embedding.embed.Embedder` (loaded once per worker process by
:class:`VGGishModelHandler`), entries are made and checked by
:mod:`tagger.embedding.cache`, and tag rows come from :class:`tagger.tagging.api.Head`.

Graph::

    inputs -> Plan (cache hit / to embed) -> Decode --patches--> RunInference(VGGish)
                                                  \\--meta--\\        |
                                                   \\--errors--> errors.tsv
    CoGroupByKey(meta, embeddings) -> Assemble (cache entry written) -> [tag: Head -> sharded CSV/JSONL]

Inputs are local files, folders and list files (DirectRunner), or ``gs://``
paths and globs (matched inside the pipeline with ``fileio.MatchAll``).
apache-beam is imported by this module only: ``pip install "tagger[beam]"``.
"""

import functools
import json
import logging
import os
import tempfile

import numpy as np

from .embedding import cache, files, provenance
from .exceptions import ParameterError
from .records import delimited_line, parquet_path_columns

__all__ = ["BEAM_RUNNERS", "is_beam_runner", "run_embed", "run_tag", "track_id_for_url"]  # and VGGishModelHandler

log = logging.getLogger(__name__)

BEAM_RUNNERS = ("beam", "DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PrismRunner")
_NAMESPACE = "tagger"
CHUNK_PATCHES = 32  # patches per pipeline element between decoding and the network


def is_beam_runner(runner):
    """Whether ``--runner`` asks for the Beam pipeline (``beam`` means Beam's DirectRunner)."""
    return runner is not None and runner != "local"


def _beam():
    try:
        import apache_beam as beam
    except ImportError as exc:  # the extra is optional
        raise ParameterError('--runner needs Apache Beam: pip install "tagger[beam]"') from exc
    return beam


def _is_remote(path):
    return "://" in str(path)


def track_id_for_url(url, root=None):
    """Track id of a file in a bucket: its path below ``root`` (a URL prefix), else ``_<scheme>/<bucket>/<key>``."""
    if root and str(root).rstrip("/") + "/" == url[: len(str(root).rstrip("/")) + 1]:
        return url[len(str(root).rstrip("/")) + 1 :]
    scheme, rest = url.split("://", 1)
    return f"_{scheme}/{rest}"


def _read_bytes(path):
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        return f.read()


def _write_entry(cache_dir, track_id, entry):
    """Write an entry: atomically on a local disk, as one object in a bucket (objects appear whole)."""
    if not _is_remote(cache_dir):
        return cache.write_entry(cache_dir, track_id, entry)
    import pickle

    from apache_beam.io.filesystems import FileSystems

    path = cache.entry_path(cache_dir, track_id).replace(os.sep, "/")
    with FileSystems.create(path) as f:
        f.write(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def _fingerprint(path):
    if not _is_remote(path):
        return files.fingerprint(path)
    from apache_beam.io.filesystems import FileSystems

    try:
        size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
        with FileSystems.open(path) as f:
            return files.fingerprint_stream(f, size)
    except Exception:  # noqa: BLE001 - unreadable: the decoder reports why
        return None


class _Storage:
    """Cache entries on a local disk or in a bucket, for :class:`tagger.embedding.cache.CacheView` (the one policy)."""

    def read(self, path):
        if not _is_remote(path):
            return cache.LocalStorage().read(path)
        from apache_beam.io.filesystems import FileSystems

        if not FileSystems.exists(path):
            return None
        return _read_bytes(path)

    def write(self, cache_dir, track_id, entry):
        return _write_entry(cache_dir, track_id, entry)

    def writable(self, cache_dir):
        return True if _is_remote(cache_dir) else cache.writable(cache_dir)


def _view(settings):
    return cache.CacheView(settings["cache_dir"], settings["provenance"], storage=_Storage())


def _settings(embedder, *, cache_dir, postprocess, pca_params):
    """What the workers need, as plain values (the embedder itself stays on the launcher)."""
    return {
        "weights": embedder.weights_source,
        "batch_size": embedder.batch_size,
        "hop_seconds": embedder.hop_seconds,
        "short_policy": embedder.short_policy,
        "dtype": embedder.dtype,
        "frontend": embedder.frontend,
        "network_id": embedder.network_id,
        "kind": embedder.kind,
        "pca_id": embedder.pca_id,
        "provenance": provenance.of_extractor(embedder),
        "postprocess": postprocess,
        "pca_params": None if pca_params is None else os.fspath(pca_params),
        "cache_dir": None if cache_dir is None else os.fspath(cache_dir),
    }


@functools.lru_cache(maxsize=None)
def _dofns():
    """The pipeline's DoFns and model handler (defined once, when apache-beam is first needed)."""
    beam = _beam()
    from apache_beam.metrics import Metrics
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult  # noqa: F401 - used by the classes below

    class Plan(beam.DoFn):
        """(path, track_id) -> to decode, or (for tag) a cache hit ready for the head; done entries are counted.

        The cache policy's verdicts (:class:`tagger.embedding.cache.CacheView`), as ``tagger embed`` and
        ``tagger tag`` apply them: a kept entry (other settings, older format) is never replaced; ``embed``
        lists it in the errors file, ``tag`` embeds the clip for its row without storing it.
        """

        def __init__(self, settings, *, keep_hits):
            self.settings, self.keep_hits = settings, keep_hits
            self.skipped = Metrics.counter(_NAMESPACE, "skipped")

        def setup(self):
            self.view = None if self.settings["cache_dir"] is None else _view(self.settings)

        def process(self, item):
            path, track_id = item
            print_ = _fingerprint(path)
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

        def process(self, item):
            path, track_id, print_, store = item
            local, tmp = path, None
            try:
                if _is_remote(path):
                    data = _read_bytes(path)
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
            from .embedding.decode import decode_messages

            try:
                times, k = [], 0
                for message in decode_messages(
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

    class VGGishModelHandler(ModelHandler):
        """RunInference handler: VGGish (any weight form tagger reads) on batches of patch chunks.

        The network is loaded once per worker process (``load_model``) and
        shared by its threads; partial batches are padded to one shape.
        """

        def __init__(self, settings):
            per_batch = max(1, settings["batch_size"] // CHUNK_PATCHES)
            super().__init__(min_batch_size=1, max_batch_size=per_batch)
            self.settings = settings

        def load_model(self):
            from .embedding.embed import Embedder

            s = self.settings
            return Embedder(
                s["weights"],
                batch_size=s["batch_size"],
                hop_seconds=s["hop_seconds"],
                short_policy=s["short_policy"],
                dtype=s["dtype"],
            )

        def run_inference(self, batch, model, inference_args=None):
            sizes = np.cumsum([len(chunk) for chunk in batch])[:-1]
            out = model.run(np.concatenate(batch))
            return [PredictionResult(chunk, emb) for chunk, emb in zip(batch, np.split(out, sizes))]

        def get_metrics_namespace(self):
            return "tagger_vggish"

    class Assemble(beam.DoFn):
        """Chunks of one track -> its cache entry (written when a cache is set); yields (track id, result)."""

        def __init__(self, settings):
            self.settings = settings
            self.embedded = Metrics.counter(_NAMESPACE, "embedded")

        def setup(self):
            from .embedding.postprocess import Postprocessor

            self.post = Postprocessor(self.settings["pca_params"]) if self.settings["postprocess"] else None
            self.view = None if self.settings["cache_dir"] is None else _view(self.settings)

        def process(self, element):
            track_id, groups = element
            if not groups["meta"]:
                return []  # failed while decoding: in errors.tsv
            meta = groups["meta"][0]
            chunks = dict(groups["embeddings"])
            if len(chunks) != meta["chunks"]:
                return [
                    beam.pvalue.TaggedOutput(
                        "errors", (meta["path"], f"{len(chunks)} of {meta['chunks']} chunks embedded")
                    )
                ]
            raw = np.concatenate([chunks[k] for k in range(meta["chunks"])]).astype(np.float32)
            s = self.settings
            kind = "postprocessed" if self.post is not None else "raw"
            emb = self.post(raw) if self.post is not None else raw
            entry = cache.make_entry(
                emb,
                meta["timestamps"],
                kind=kind,
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
            self.tagged = Metrics.counter(_NAMESPACE, "tagged")

        def setup(self):
            from .embedding.postprocess import Postprocessor
            from .tagging.api import Head
            from .tagging.writer import row_fields

            self.head = Head(self.model)
            self.post = Postprocessor(self.pca_params) if self.head.postprocess else None
            self.fieldnames = row_fields(self.top_n)

        def process(self, element):
            from .tagging.api import TagResult

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
            row = self.head.rows(result, top_n=self.top_n, threshold=self.threshold)
            self.tagged.inc()
            if self.fmt == "parquet":
                yield {**row, **parquet_path_columns(item["path"])}
            elif self.fmt == "csv":
                yield delimited_line([row.get(k, "") for k in self.fieldnames])
            else:
                yield json.dumps(self.head.record(result, row))

    return Plan, Decode, VGGishModelHandler, Assemble, TagRows


def __getattr__(name):
    if name == "VGGishModelHandler":
        return _dofns()[2]
    raise AttributeError(f"module 'tagger.distributed' has no attribute {name!r}")


def _tsv_line(path_error):
    return delimited_line(path_error, "\t")


@functools.lru_cache(maxsize=None)
def _text_coder():
    """Lines written as UTF-8 with file names that are not UTF-8 kept byte for byte (as :data:`tagger.records.TEXT`)."""
    beam = _beam()

    class SurrogateEscapeCoder(beam.coders.Coder):
        def encode(self, value):
            return value.encode("utf-8", "surrogateescape")

        def decode(self, value):
            return value.decode("utf-8", "surrogateescape")

        def is_deterministic(self):
            return True

    return SurrogateEscapeCoder()


def _items(inputs, *, include, exclude, root):
    """Local inputs expanded now (files.collect); remote ones and globs become patterns matched in the pipeline."""
    local, patterns = [], []
    for item in map(os.fspath, inputs):
        if _is_remote(item):
            patterns.append(item.rstrip("/") + "/**" if item.endswith("/") else item)
        elif any(c in item for c in "*?[") and not os.path.exists(item):
            import glob

            local.extend(
                files.collect(sorted(glob.glob(item, recursive=True)), include=include, exclude=exclude, root=root)
            )
        else:
            local.extend(files.collect([item], include=include, exclude=exclude, root=root))
    return local, patterns


def _options(pipeline_args, runner):
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(pipeline_args or [])
    name = "DirectRunner" if runner == "beam" else runner
    return PipelineOptions(["--runner", name, *args])


def _source(p, beam, local, patterns, include, exclude, root):
    """The (path, track id) pairs of the inputs, as one PCollection."""
    parts = []
    if local:
        parts.append(p | "LocalFiles" >> beam.Create(local))
    if patterns:
        from apache_beam.io import fileio

        def keep(meta):
            path = meta.path
            name = path.rsplit("/", 1)[-1]
            if not name.lower().endswith(files.AUDIO_EXTENSIONS):
                return []
            if (include and not files.matches(name, include)) or (exclude and files.matches(name, exclude)):
                return []
            return [(path, track_id_for_url(path, root))]

        parts.append(
            p | "Patterns" >> beam.Create(patterns) | "Match" >> fileio.MatchAll() | "Audio" >> beam.FlatMap(keep)
        )
    if not parts:
        raise ParameterError("no inputs")
    return parts[0] if len(parts) == 1 else parts | "Inputs" >> beam.Flatten()


def _build(p, beam, settings, local, patterns, *, include, exclude, root, errors_path, keep_hits):
    """The shared graph: inputs -> plan -> decode -> RunInference -> assemble; returns (results, hits)."""
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    Plan, Decode, Handler, Assemble, _ = _dofns()
    items = _source(p, beam, local, patterns, include, exclude, root)
    planned = items | "Plan" >> beam.ParDo(Plan(settings, keep_hits=keep_hits)).with_outputs(
        "hits", "kept", main="todo"
    )
    decoded = planned.todo | "Decode" >> beam.ParDo(Decode(settings)).with_outputs("meta", "errors", main="patches")
    embedded = (
        decoded.patches
        | "VGGish" >> RunInference(KeyedModelHandler(Handler(settings)))
        | "ByTrack" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1].inference)))
    )
    assembled = (
        {"meta": decoded.meta, "embeddings": embedded}
        | "Join" >> beam.CoGroupByKey()
        | "Assemble" >> beam.ParDo(Assemble(settings)).with_outputs("errors", main="entries")
    )
    from apache_beam.metrics import Metrics

    errors = (planned.kept, decoded.errors, assembled.errors) | "Errors" >> beam.Flatten()
    failed = Metrics.counter(_NAMESPACE, "failed")

    def count(pair):
        failed.inc()
        return _tsv_line(pair)

    (
        errors
        | "ErrorLines" >> beam.Map(count)
        | "WriteErrors"
        >> beam.io.WriteToText(errors_path, shard_name_template="", header="path\terror", coder=_text_coder())
    )
    return assembled.entries, planned.hits


def _summary(result):
    from apache_beam.metrics.metric import MetricsFilter

    out = {}
    for name in ("embedded", "skipped", "failed", "tagged"):
        found = result.metrics().query(MetricsFilter().with_namespace(_NAMESPACE).with_name(name))["counters"]
        out[name] = int(sum(c.committed or 0 for c in found))
    return out


#: what a Dataflow job cannot start without (Beam's own validation asks Google Cloud for defaults first)
_DATAFLOW_REQUIRED = ("project", "region", "temp_location")


def _pipeline(beam, options, pipeline_args, dry_run):
    """The pipeline to build: a dry run builds its graph under the DirectRunner, so nothing contacts Google Cloud."""
    if dry_run:
        return beam.Pipeline(options=_options(pipeline_args, "DirectRunner"))
    return beam.Pipeline(options=options)


def _describe(p, options):
    """The graph (top-level transforms and their parts) and the options that would be submitted."""
    proto = p.to_runner_api()
    transforms = proto.components.transforms
    lines = ["pipeline:"]

    def walk(tid, depth):
        t = transforms[tid]
        lines.append("  " * depth + "- " + t.unique_name.rsplit("/", 1)[-1])
        if depth < 2:
            for sub in t.subtransforms:
                walk(sub, depth + 1)

    for tid in proto.root_transform_ids:
        for sub in transforms[tid].subtransforms or [tid]:
            walk(sub, 1)
    given = options.get_all_options(drop_default=True, retain_unknown_options=True)
    if given.get("runner") == "DataflowRunner":
        missing = [name for name in _DATAFLOW_REQUIRED if not given.get(name)]
        if missing:
            lines.append(f"a real run needs: {', '.join('--' + m for m in missing)} (not checked against Google Cloud)")
    lines.append(
        "options: "
        + json.dumps(
            options.get_all_options(drop_default=True, retain_unknown_options=True),
            indent=1,
            sort_keys=True,
            default=str,
        )
    )
    return "\n".join(lines)


def _check_runner_inputs(runner, local):
    if local and runner not in ("beam", "DirectRunner", "PrismRunner"):
        raise ParameterError(f"--runner {runner} runs on other machines: give gs:// inputs (not {local[0][0]!r})")


def run_embed(
    inputs,
    cache_dir,
    *,
    embedder,
    runner="beam",
    pipeline_args=(),
    include=(),
    exclude=(),
    root=None,
    postprocess=False,
    pca_params=None,
    errors_file=None,
    dry_run=False,
):
    """``tagger embed --runner beam``: the cache entries of :func:`tagger.embedding.embed.embed_files`, through Beam.

    Parameters
    ----------
    inputs : sequence of str
        Local files, folders, list files, globs, or ``gs://`` paths and globs.
    cache_dir : str
        Local folder or ``gs://`` prefix.
    embedder : tagger.embedding.embed.Embedder
        Its settings (weights, batch size, hop, precision) are what the workers load.
    runner : str
        ``beam`` (DirectRunner) or a Beam runner name.
    pipeline_args : sequence of str
        Further Beam pipeline options (``--project``, ``--region``, ``--temp_location`` ...).
    dry_run : bool
        Print the graph and options; run nothing.

    Returns
    -------
    dict
        embedded, skipped, failed (Beam metrics) and errors_file; or the description on a dry run.
    """
    beam = _beam()
    local, patterns = _items(inputs, include=include, exclude=exclude, root=root)
    _check_runner_inputs(runner, local)
    settings = _settings(embedder, cache_dir=cache_dir, postprocess=postprocess, pca_params=pca_params)
    errors_file = errors_file or (
        cache_dir.rstrip("/") + "/errors.tsv" if _is_remote(cache_dir) else os.path.join(cache_dir, "errors.tsv")
    )
    if not _is_remote(cache_dir):
        os.makedirs(cache_dir, exist_ok=True)
        if local and not dry_run:  # the policy's rule of `tagger embed`: kept entries stop the run before any work
            from .embedding.embed import plan

            plan(local, _view(settings))
    options = _options(pipeline_args, runner)
    p = _pipeline(beam, options, pipeline_args, dry_run)
    _build(
        p,
        beam,
        settings,
        local,
        patterns,
        include=include,
        exclude=exclude,
        root=root,
        errors_path=errors_file,
        keep_hits=False,
    )
    if dry_run:
        return {"description": _describe(p, options)}
    result = p.run()
    result.wait_until_finish()
    summary = _summary(result)
    summary.update(total=summary["embedded"] + summary["skipped"] + summary["failed"], errors_file=errors_file)
    return summary


def run_tag(
    inputs,
    out,
    *,
    model,
    embedder,
    runner="beam",
    pipeline_args=(),
    fmt="csv",
    top_n=5,
    threshold=None,
    cache_dir=None,
    include=(),
    exclude=(),
    root=None,
    pca_params=None,
    errors_file=None,
    dry_run=False,
    allow_other_embedding=False,
):
    """``tagger tag --runner beam``: the rows of :func:`tagger.tagging.writer.tag_to_file`, as sharded files.

    Outputs ``<out stem>-SSSSS-of-NNNNN<ext>`` shards (CSV, each shard with its
    header; JSONL; or Parquet through pyarrow, the CSV's columns), ``OUT.meta.json`` (the settings, as ``tagger tag`` records them)
    and ``OUT.errors.tsv``. Cache hits skip decoding and the network; new
    embeddings are written to the cache when one is given.
    """
    beam = _beam()
    from .tagging.api import Head, check_trained_on
    from .tagging.writer import check_options, output_settings, row_fields

    if fmt not in ("csv", "jsonl", "parquet"):
        raise ParameterError(f"format={fmt!r} must be csv, jsonl or parquet")
    head = Head(model)
    top_n = check_options(head, top_n=top_n, threshold=threshold)
    check_trained_on(head, embedder, allow=allow_other_embedding)
    local, patterns = _items(inputs, include=include, exclude=exclude, root=root)
    _check_runner_inputs(runner, local)
    # the network's raw output is cached (it serves heads of either kind); the head postprocesses on the fly
    settings = _settings(embedder, cache_dir=cache_dir, postprocess=False, pca_params=pca_params)
    settings.update(kind="raw", pca_id=None)
    stem, ext = os.path.splitext(os.fspath(out))
    errors_file = errors_file or os.fspath(out) + ".errors.tsv"
    options = _options(pipeline_args, runner)
    p = _pipeline(beam, options, pipeline_args, dry_run)
    entries, hits = _build(
        p,
        beam,
        settings,
        local,
        patterns,
        include=include,
        exclude=exclude,
        root=root,
        errors_path=errors_file,
        keep_hits=True,
    )
    *_, TagRows = _dofns()
    header = delimited_line(row_fields(top_n)) if fmt == "csv" else None
    rows = (
        (entries, hits)
        | "Clips" >> beam.Flatten()
        | "Head" >> beam.ParDo(TagRows(model, pca_params, fmt, top_n, threshold))
    )
    if fmt == "parquet":
        import pyarrow as pa

        schema = pa.schema(
            [
                (name, pa.float64() if name == "duration" or name.startswith("p_") else pa.string())
                for name in row_fields(top_n)
            ]
            + [("path_bytes", pa.binary())]
        )
        rows | "WriteRows" >> beam.io.WriteToParquet(stem, schema, file_name_suffix=ext or ".parquet")
    else:
        rows | "WriteRows" >> beam.io.WriteToText(
            stem, file_name_suffix=ext or "." + fmt, header=header, coder=_text_coder()
        )
    if dry_run:
        return {"description": _describe(p, options)}
    meta = {
        "settings": output_settings(head, embedder, fmt=fmt, top_n=top_n, threshold=threshold, taggram=False),
        "runner": runner,
        "shards": f"{os.path.basename(stem)}-*-of-*{ext or '.' + fmt}",
    }
    if not _is_remote(out):
        from .records import write_json_atomic

        write_json_atomic(meta, os.fspath(out) + ".meta.json")
    result = p.run()
    result.wait_until_finish()
    summary = _summary(result)
    summary.update(total=summary["tagged"] + summary["failed"], errors_file=errors_file, shards=meta["shards"])
    return summary
