"""The Beam pipeline of ``tagger embed`` and ``tagger tag`` (imported only when Beam runs; see :mod:`tagger.distributed`).

Graph::

    inputs -> Plan (cache hit / to embed) -> Decode --patches--> RunInference(network)
                                                  \\--meta--\\        |
                                                   \\--errors--> errors.tsv
    CoGroupByKey(meta, embeddings) -> Assemble (cache entry written) -> [tag: Head -> sharded CSV/JSONL]

The steps themselves are in :mod:`tagger.distributed.transforms`, the storage of files and entries in
:mod:`tagger.distributed.remote`.
"""

import glob
import json
import os

import apache_beam as beam
import pyarrow as pa
from apache_beam.io import fileio
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from ..embedding import embed, files, provenance, registry
from ..exceptions import ParameterError
from ..records import delimited_line, write_json_atomic
from ..tagging import writer
from ..tagging.api import Head, check_trained_on
from . import remote, transforms

__all__ = ["run_embed", "run_tag", "settings_of"]


def settings_of(embedder, *, cache_dir, postprocess, pca_params):
    """What the workers need, as plain values (the embedder itself stays on the launcher)."""
    if getattr(embedder, "frontend_kind", None) == "device":  # workers make the reference frontend's patches
        raise ParameterError(
            "the Beam pipeline runs the reference frontend: make the embedder with frontend_kind='reference'"
            " (--frontend device runs locally only)"
        )
    return {
        "weights": embedder.weights_source,
        "batch_size": embedder.batch_size,
        "hop_seconds": embedder.hop_seconds,
        "short_policy": embedder.short_policy,
        "dtype": embedder.dtype,
        "guard_tolerance": embedder.guard_tolerance,
        "frontend": embedder.frontend,
        "network_id": embedder.network_id,
        "kind": embedder.kind,
        "pca_id": embedder.pca_id,
        "provenance": provenance.of_extractor(embedder),
        "postprocess": postprocess,
        "pca_params": None if pca_params is None else os.fspath(pca_params),
        "cache_dir": None if cache_dir is None else os.fspath(cache_dir),
    }


def _tsv_line(path_error):
    return delimited_line(path_error, "\t")


def _items(inputs, *, include, exclude, root):
    """Local inputs expanded now (files.collect); remote ones and globs become patterns matched in the pipeline."""
    local, patterns = [], []
    for item in map(os.fspath, inputs):
        if remote.is_remote(item):
            patterns.append(item.rstrip("/") + "/**" if item.endswith("/") else item)
        elif any(c in item for c in "*?[") and not os.path.exists(item):
            local.extend(
                files.collect(sorted(glob.glob(item, recursive=True)), include=include, exclude=exclude, root=root)
            )
        else:
            local.extend(files.collect([item], include=include, exclude=exclude, root=root))
    return local, patterns


def _options(pipeline_args, runner):
    args = list(pipeline_args or [])
    name = "DirectRunner" if runner == "beam" else runner
    return PipelineOptions(["--runner", name, *args])


def _source(p, local, patterns, include, exclude, root):
    """The (path, track id) pairs of the inputs, as one PCollection."""
    parts = []
    if local:
        parts.append(p | "LocalFiles" >> beam.Create(local))
    if patterns:

        def keep(meta):
            path = meta.path
            name = path.rsplit("/", 1)[-1]
            if not name.lower().endswith(files.AUDIO_EXTENSIONS):
                return []
            if (include and not files.matches(name, include)) or (exclude and files.matches(name, exclude)):
                return []
            return [(path, remote.track_id_for_url(path, root))]

        parts.append(
            p | "Patterns" >> beam.Create(patterns) | "Match" >> fileio.MatchAll() | "Audio" >> beam.FlatMap(keep)
        )
    if not parts:
        raise ParameterError("no inputs")
    return parts[0] if len(parts) == 1 else parts | "Inputs" >> beam.Flatten()


def _build(p, settings, local, patterns, *, include, exclude, root, errors_path, keep_hits):
    """The shared graph: inputs -> plan -> decode -> RunInference -> assemble; returns (results, hits)."""
    items = _source(p, local, patterns, include, exclude, root)
    planned = items | "Plan" >> beam.ParDo(transforms.Plan(settings, keep_hits=keep_hits)).with_outputs(
        "hits", "kept", main="todo"
    )
    decoded = planned.todo | "Decode" >> beam.ParDo(transforms.Decode(settings)).with_outputs(
        "meta", "errors", main="patches"
    )
    embedded = (
        decoded.patches
        | "Network" >> RunInference(KeyedModelHandler(transforms.ExtractorModelHandler(settings)))
        | "ByTrack" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1].inference)))
    )
    assembled = (
        {"meta": decoded.meta, "embeddings": embedded}
        | "Join" >> beam.CoGroupByKey()
        | "Assemble" >> beam.ParDo(transforms.Assemble(settings)).with_outputs("errors", main="entries")
    )
    errors = (planned.kept, decoded.errors, assembled.errors) | "Errors" >> beam.Flatten()
    failed = Metrics.counter(transforms.NAMESPACE, "failed")

    def count(pair):
        failed.inc()
        return _tsv_line(pair)

    (
        errors
        | "ErrorLines" >> beam.Map(count)
        | "WriteErrors"
        >> beam.io.WriteToText(errors_path, shard_name_template="", header="path\terror", coder=transforms.TEXT_CODER)
    )
    return assembled.entries, planned.hits


def _summary(result):
    out = {}
    for name in ("embedded", "skipped", "failed", "tagged"):
        found = result.metrics().query(MetricsFilter().with_namespace(transforms.NAMESPACE).with_name(name))["counters"]
        out[name] = int(sum(c.committed or 0 for c in found))
    return out


#: what a Dataflow job cannot start without (Beam's own validation asks Google Cloud for defaults first)
_DATAFLOW_REQUIRED = ("project", "region", "temp_location")


def _pipeline(options, pipeline_args, dry_run):
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
    embedder : tagger.embedding.vggish.extractor.Embedder
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
    local, patterns = _items(inputs, include=include, exclude=exclude, root=root)
    _check_runner_inputs(runner, local)
    if not dry_run:
        embedder.settle([path for path, _ in local])  # the precision guard, on this machine, before the settings
    settings = settings_of(embedder, cache_dir=cache_dir, postprocess=postprocess, pca_params=pca_params)
    errors_file = errors_file or (
        cache_dir.rstrip("/") + "/errors.tsv" if remote.is_remote(cache_dir) else os.path.join(cache_dir, "errors.tsv")
    )
    if not remote.is_remote(cache_dir):
        os.makedirs(cache_dir, exist_ok=True)
        if local and not dry_run:  # the policy's rule of `tagger embed`: kept entries stop the run before any work
            embed.plan(local, remote.view(settings))
    options = _options(pipeline_args, runner)
    p = _pipeline(options, pipeline_args, dry_run)
    _build(
        p,
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
    if fmt not in writer.BEAM_FORMATS:
        raise ParameterError(f"format={fmt!r} must be one of {writer.BEAM_FORMATS}")
    head = Head(model)
    spec = registry.kind(head.input_kind)
    if registry.model(spec.model).decode is None:  # the Beam transforms run a network on its model's decode job
        raise ParameterError(
            f"model {model!r} takes {spec.description}; the Beam pipeline runs heads on a network's embeddings"
            f" (models with a decode job: {', '.join(m for m in registry.models() if registry.model(m).decode)})"
        )
    top_n = writer.check_options(head, top_n=top_n, threshold=threshold)
    check_trained_on(head, embedder, allow=allow_other_embedding)
    local, patterns = _items(inputs, include=include, exclude=exclude, root=root)
    _check_runner_inputs(runner, local)
    if not dry_run:
        embedder.settle([path for path, _ in local])  # the precision guard, on this machine, before the settings
    # the network's raw output is cached (it serves heads of either kind); the head postprocesses on the fly
    settings = settings_of(embedder, cache_dir=cache_dir, postprocess=False, pca_params=pca_params)
    settings.update(kind=spec.served_by or spec.name, pca_id=None)
    stem, ext = os.path.splitext(os.fspath(out))
    errors_file = errors_file or os.fspath(out) + ".errors.tsv"
    options = _options(pipeline_args, runner)
    p = _pipeline(options, pipeline_args, dry_run)
    entries, hits = _build(
        p,
        settings,
        local,
        patterns,
        include=include,
        exclude=exclude,
        root=root,
        errors_path=errors_file,
        keep_hits=True,
    )
    header = delimited_line(writer.row_fields(top_n)) if fmt == "csv" else None
    rows = (
        (entries, hits)
        | "Clips" >> beam.Flatten()
        | "Head" >> beam.ParDo(transforms.TagRows(model, pca_params, fmt, top_n, threshold))
    )
    if fmt == "parquet":
        schema = pa.schema(
            [
                (name, pa.float64() if name == "duration" or name.startswith("p_") else pa.string())
                for name in writer.row_fields(top_n)
            ]
            + [("path_bytes", pa.binary())]
        )
        rows | "WriteRows" >> beam.io.WriteToParquet(stem, schema, file_name_suffix=ext or ".parquet")
    else:
        rows | "WriteRows" >> beam.io.WriteToText(
            stem, file_name_suffix=ext or "." + fmt, header=header, coder=transforms.TEXT_CODER
        )
    if dry_run:
        return {"description": _describe(p, options)}
    meta = {
        "settings": writer.output_settings(head, embedder, fmt=fmt, top_n=top_n, threshold=threshold, taggram=False),
        "runner": runner,
        "shards": f"{os.path.basename(stem)}-*-of-*{ext or '.' + fmt}",
    }
    if not remote.is_remote(out):
        write_json_atomic(meta, os.fspath(out) + ".meta.json")
    result = p.run()
    result.wait_until_finish()
    summary = _summary(result)
    summary.update(total=summary["tagged"] + summary["failed"], errors_file=errors_file, shards=meta["shards"])
    return summary
