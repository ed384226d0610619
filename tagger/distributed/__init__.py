"""Step 5, corpus scale: ``tagger embed`` and ``tagger tag`` as an Apache Beam pipeline.

The DirectRunner runs it on this machine; Google Cloud Dataflow (or any Beam
runner) runs it on many. The pipeline adds distribution, not a second
implementation: files are decoded and patched by
:func:`tagger.embedding.vggish.frontend.decode_messages` (the workers of ``tagger embed``),
patches from many files are batched by ``RunInference``'s own batching and
run through :class:`tagger.embedding.vggish.extractor.Embedder` (loaded once per worker process by
:class:`ExtractorModelHandler`), entries are made and checked by
:mod:`tagger.embedding.cache`, and tag rows come from :class:`tagger.tagging.api.Head`.

Graph::

    inputs -> Plan (cache hit / to embed) -> Decode --patches--> RunInference(VGGish)
                                                  \\--meta--\\        |
                                                   \\--errors--> errors.tsv
    CoGroupByKey(meta, embeddings) -> Assemble (cache entry written) -> [tag: Head -> sharded CSV/JSONL]

Inputs are local files, folders and list files (DirectRunner), or ``gs://``
paths and globs (matched inside the pipeline with ``fileio.MatchAll``).
Modules: :mod:`.pipeline` (the graph, :func:`run_embed` and :func:`run_tag`),
:mod:`.transforms` (its steps) and :mod:`.remote` (files in buckets). They import
apache-beam at their top and are imported only when a Beam runner is asked for:
importing this package loads none of it (``pip install "vggish-tagger[beam]"``).
"""

from ..exceptions import ParameterError

__all__ = ["BEAM_RUNNERS", "is_beam_runner", "check_runner", "run_embed", "run_tag"]

BEAM_RUNNERS = ("beam", "DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PrismRunner")


def is_beam_runner(runner):
    """Whether ``--runner`` asks for the Beam pipeline (``beam`` means Beam's DirectRunner)."""
    return runner is not None and runner != "local"


def check_runner(runner, *, dry_run=False):
    """Whether a command runs through Beam; a dry run without a Beam runner is refused."""
    if is_beam_runner(runner):
        return True
    if dry_run:
        raise ParameterError("--dry-run goes with a Beam --runner")
    return False


def _pipeline():
    """:mod:`tagger.distributed.pipeline`, loading apache-beam (a clear error when the extra is not installed)."""
    try:
        from . import pipeline
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("apache_beam", "pyarrow"):
            raise
        raise ParameterError('--runner needs Apache Beam: pip install "vggish-tagger[beam]"') from exc
    return pipeline


def run_embed(inputs, cache_dir, **settings):
    """``tagger embed --runner beam``: :func:`tagger.distributed.pipeline.run_embed` (loads apache-beam)."""
    return _pipeline().run_embed(inputs, cache_dir, **settings)


def run_tag(inputs, out, **settings):
    """``tagger tag --runner beam``: :func:`tagger.distributed.pipeline.run_tag` (loads apache-beam)."""
    return _pipeline().run_tag(inputs, out, **settings)
