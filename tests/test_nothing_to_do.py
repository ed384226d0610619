"""A run with nothing to do loads no network: the planned record (tagger.embedding.extractor.plan), the weights-id
memo it rests on, and the embed and tag paths that use it; each checked against the made extractor's own record."""

import dataclasses
import json
import os
import pathlib
import shutil

import pytest
from helpers import write_audio

from tagger.embedding import cache, extractor, files, provenance
from tagger.embedding import weights as memo
from tagger.embedding.embed import embed_files
from tagger.embedding.extractor import Deferred
from tagger.exceptions import DataError
from tagger.tagging import api, writer

SETTINGS = [
    dict(kind="raw", dtype="float32"),
    dict(kind="raw", dtype="bfloat16", hop_seconds=0.48, short_policy="skip"),  # the device frontend, by default
    dict(kind="postprocessed", dtype="float32", pca=True),
]


@pytest.fixture
def own_weights(tmp_path, plain_weights):
    """The fixture weights in a file of this test's own: the memo has never seen it."""
    path = tmp_path / "weights" / "vggish.npz"
    path.parent.mkdir()
    shutil.copy(plain_weights, path)
    return str(path)


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_the_planned_record_is_the_made_extractors_and_needs_the_files_as_they_were_read(
    own_weights, request, settings
):
    settings = dict(settings, weights=own_weights)
    if settings.pop("pca", False):
        settings["pca_params"] = str(request.getfixturevalue("pca_params"))
    kind = settings.pop("kind")
    assert extractor.plan(kind, **settings) is None  # never read: only the network can say
    made = extractor.make(kind, **settings)
    planned = extractor.plan(kind, **settings)
    assert provenance.of_extractor(planned) == provenance.of_extractor(made)
    assert made.frontend.get("frontend_kind", "reference") == ("reference" if made.dtype == "float32" else "device")
    assert planned.postprocessor is None or planned.postprocessor.id == made.pca_id
    stat = os.stat(own_weights)
    os.utime(own_weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # touched: read again
    assert extractor.plan(kind, **settings) is None


def test_the_memo_survives_only_the_files_it_was_made_from(tmp_path, own_weights, monkeypatch):
    before = memo.signature(own_weights)
    memo.remember_id(own_weights, before, "vggish-sha1:one", model="vggish")
    assert memo.recall_id(own_weights, model="vggish") == "vggish-sha1:one"
    assert memo.recall_id(own_weights, model="musicnn-mtt") is None
    moved = tmp_path / "moved.npz"
    shutil.copy(own_weights, moved)
    assert memo.recall_id(str(moved), model="vggish") is None  # another file, though the same bytes
    with open(own_weights, "ab") as f:  # changed while it was read: not remembered
        f.write(b"\0")
    memo.remember_id(own_weights, before, "vggish-sha1:two", model="vggish")
    assert memo.recall_id(own_weights, model="vggish") is None
    assert memo.recall_id("https://tfhub.dev/google/vggish/1", model="vggish") is None
    monkeypatch.setenv("TAGGER_CACHE_HOME", str(tmp_path / "memo.json"))  # a file where the folder goes: not written
    (tmp_path / "memo.json").write_text("")
    memo.remember_id(own_weights, memo.signature(own_weights), "vggish-sha1:three", model="vggish")
    assert memo.recall_id(own_weights, model="vggish") is None


def _counting(make):
    calls = []

    def counted():
        calls.append(1)
        return make()

    return counted, calls


@pytest.mark.integration  # decodes real files through the pipeline's worker-less path
def test_embed_makes_a_deferred_extractor_only_for_tracks_the_cache_lacks(tmp_path, own_weights):
    clips = tmp_path / "clips"
    for i in range(2):
        write_audio(clips / f"{i}.wav", 1.5, freq=300 + 200 * i)
    cache_dir = str(tmp_path / "cache")
    settings = dict(weights=own_weights, dtype="float32")
    first = embed_files([str(clips)], cache_dir, extractor=extractor.make("raw", **settings), workers=0)
    assert first["embedded"] == 2
    make, calls = _counting(lambda: extractor.make("raw", **settings))
    again = embed_files([str(clips)], cache_dir, extractor=Deferred(make, extractor.plan("raw", **settings)), workers=0)
    assert (again["embedded"], again["skipped"], calls) == (0, 2, [])
    write_audio(clips / "2.wav", 1.5, freq=900)
    more = Deferred(make, extractor.plan("raw", **settings))
    assert embed_files([str(clips)], cache_dir, extractor=more, workers=0)["embedded"] == 1 and calls == [1]
    # a plan the made extractor does not keep to (a bfloat16 run whose precision guard fell back to float32):
    # the cache's float32 entries are judged by the made extractor's own record, and serve it
    planned = extractor.plan("raw", **settings)
    hoped = dataclasses.replace(planned, dtype="bfloat16", network_id=planned.network_id + "+bfloat16")
    fell_back = Deferred(make, hoped)
    summary = embed_files([str(clips)], cache_dir, extractor=fell_back, workers=0)
    assert (summary["skipped"], fell_back.made) == (3, True)


@pytest.mark.integration  # the shipped head on postprocessed embeddings: the official PCA parameters
def test_a_tag_rerun_loads_nothing_and_a_cached_tag_loads_only_the_head(tmp_path, own_weights, pca_params, monkeypatch):
    clips = tmp_path / "clips"
    for i in range(2):
        write_audio(clips / f"{i}.wav", 2.0, freq=250 + 300 * i)
    heads = []
    load_head = api.bundle.load_head
    monkeypatch.setattr(api.bundle, "load_head", lambda *a, **k: heads.append(1) or load_head(*a, **k))
    settings = dict(weights=own_weights, pca_params=str(pca_params), dtype="float32", cache_dir=str(tmp_path / "c"))
    out, fresh = str(tmp_path / "tags.csv"), str(tmp_path / "fresh.csv")
    first = api.Tagger("genre10", **settings)
    assert first.planned is None  # weights never read before: made at once, as always
    assert writer.tag_to_file(first, [str(clips)], out, workers=0)["tagged"] == 2
    rows = pathlib.Path(out).read_text(encoding="utf-8")
    heads.clear()

    rerun = api.Tagger("genre10", **settings)
    assert rerun.planned is not None
    summary = writer.tag_to_file(rerun, [str(clips)], out, workers=0)
    assert (summary["skipped"], summary["tagged"], heads) == (2, 0, [])
    assert rerun.planned is not None  # the network was not made either
    assert pathlib.Path(out).read_text(encoding="utf-8") == rows

    cached = api.Tagger("genre10", **settings)
    assert writer.tag_to_file(cached, [str(clips)], fresh, workers=0)["tagged"] == 2
    assert (heads, cached.planned is not None) == ([1], True)  # the head, not the network
    assert pathlib.Path(fresh).read_text(encoding="utf-8") == rows
    meta = [json.loads(pathlib.Path(p + ".meta.json").read_text(encoding="utf-8"))["settings"] for p in (out, fresh)]
    assert meta[0] == meta[1]  # the same recorded settings, the network's made or planned
    # an entry removed after the run chose the plan: the network is made for that clip, and must make what the plan
    # says (a plan it does not keep to stops the run rather than store mislabelled entries)
    items = files.collect([str(clips)])
    late = api.Tagger("genre10", **settings)
    source = late.source_for(items)
    assert source is late.planned
    os.remove(cache.entry_path(settings["cache_dir"], items[0][1]))
    assert [r.ok for r in late.iter_tag(items, source=source, workers=0)] == [True, True]
    assert late.planned is None  # made, for the missing clip
    other = api.Tagger("genre10", **settings)
    hoped = dataclasses.replace(other.planned, dtype="bfloat16", network_id=other.planned.network_id + "+bfloat16")
    with pytest.raises(DataError, match="went missing during the run"):
        list(other.iter_tag(items, source=hoped, workers=0))
