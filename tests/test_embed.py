import csv

import numpy as np
import pytest

from tagger import backend, cli
from tagger.embedding import audio, cache, files, provenance
from tagger.embedding.embed import embed_files
from tagger.embedding.vggish import frontend, params
from tagger.embedding.vggish.extractor import Embedder, embed
from tagger.exceptions import DataError, ParameterError, TaggerWarning
from tagger.testing import numpy_forward


@pytest.mark.backends
def test_embed_array_matches_numpy_forward(embedder, fixture_weights, gtzan_files):
    y = audio.load(gtzan_files[0])
    emb, times = embed(y[: 5 * 16000], 16000, embedder=embedder)
    patches, _ = frontend.waveform_to_patches(y[: 5 * 16000])
    assert emb.shape == (5, 128) and emb.dtype == np.float32
    np.testing.assert_allclose(times, np.arange(5) * 0.96)
    assert np.abs(emb - numpy_forward(fixture_weights, patches)).max() < 1e-4


def test_real_files_embed_into_cache(embedder, gtzan_files, mtt_clip, shared, tmp_path):
    root = shared / "data"
    summary = embed_files(
        [shared / "data/gtzan/genres", mtt_clip], tmp_path, extractor=embedder, workers=1, progress=False, root=root
    )
    assert (summary["embedded"], summary["failed"]) == (11, 0)
    for path in gtzan_files + [mtt_clip]:
        track_id = path.relative_to(root).as_posix()  # e.g. gtzan/genres/blues/blues.00000.au
        entry = cache.read_entry(
            tmp_path,
            track_id,
            frontend=embedder.frontend,
            weights=embedder.network_id,
            fingerprint=files.fingerprint(path),
        )
        assert entry["kind"] == "raw" and entry["pca"] is None
        n = frontend.n_patches(round(entry["duration"] * params.SAMPLE_RATE))
        assert entry["embedding"].shape == (n, 128) and n >= 30
        assert entry["source"] == str(path)
        assert np.all(np.isfinite(entry["embedding"]))
    # the pipeline's batches across files give what the file alone gives
    alone, _ = embedder.embed(audio.load(mtt_clip), 16000)
    np.testing.assert_allclose(
        cache.read_entry(tmp_path, "mtt/audio/e/" + mtt_clip.name)["embedding"], alone, atol=1e-5
    )
    again = embed_files(
        [shared / "data/gtzan/genres"], tmp_path, extractor=embedder, workers=1, progress=False, root=root
    )
    assert (again["skipped"], again["embedded"]) == (10, 0)


@pytest.mark.integration
@pytest.mark.backends
@pytest.mark.parametrize("workers", [0, 2])
def test_workers_and_batching_agree(embedder, make_audio, tmp_path, workers):
    paths = [make_audio(f"c{i}.wav", 0.5 + 1.7 * i, freq=300.0 + 100 * i, seed=i) for i in range(5)]
    pass_ = list(embedder.iter_files(paths, workers=workers))
    with pytest.warns(TaggerWarning, match="zero-padded"):
        reference = [embedder.embed(audio.load(p), 16000)[0] for p in paths]
    assert [r.index for r in pass_] == list(range(5))
    for r, ref in zip(pass_, reference):
        assert r.ok and r.embedding.shape == ref.shape
        np.testing.assert_allclose(r.embedding, ref, atol=1e-5)
    assert any("zero-padded" in w for w in pass_[0].warnings)


@pytest.mark.integration
def test_bad_files_reported_and_run_goes_on(embedder, make_audio, bad_files, tmp_path):
    folder = bad_files
    make_audio("bad/good_stereo48k.flac", 3.0, sr=48000, channels=2)
    make_audio("bad/sub/short.wav", 0.5, sr=8000)
    summary = embed_files([folder], tmp_path / "cache", extractor=embedder, workers=1, progress=False, root=tmp_path)
    assert (summary["embedded"], summary["failed"]) == (2, 3)
    with open(summary["errors_file"]) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert sorted(r["path"].rsplit("/", 1)[1] for r in rows) == ["cut_header.wav", "empty.wav", "notes.wav"]
    assert all(r["error"] for r in rows)
    assert cache.read_entry(tmp_path / "cache", "bad/sub/short.wav")["embedding"].shape == (1, 128)


def test_cli_exit_status_and_errors_file(ckpt_path, bad_files, make_audio, tmp_path, capsys):
    make_audio("bad/fine.wav", 2.0)
    out = tmp_path / "c"
    status = cli.main(
        ["embed", str(bad_files), "--out", str(out), "--weights", ckpt_path, "--workers", "0", "--no-progress"]
    )
    assert status == cli.EXIT_SOME_FAILED
    assert "failed 3 of 4" in capsys.readouterr().out
    assert (out / "errors.tsv").exists()
    # everything good: status 0 and the stale errors file is gone
    status = cli.main(
        [
            "embed",
            str(bad_files / "fine.wav"),
            "--out",
            str(tmp_path / "d"),
            "--weights",
            ckpt_path,
            "--workers",
            "0",
            "--no-progress",
        ]
    )
    assert status == cli.EXIT_OK


def test_cli_missing_weights_is_a_clean_error(tmp_path, make_audio, capsys):
    make_audio("a.wav", 1.0)
    status = cli.main(
        ["embed", str(tmp_path / "a.wav"), "--out", str(tmp_path / "c"), "--weights", str(tmp_path / "no.ckpt")]
    )
    assert status == cli.EXIT_ERROR
    assert "TAGGER_VGGISH_WEIGHTS" in capsys.readouterr().err


def test_stale_cache_refused_before_work(embedder, make_audio, tmp_path, ckpt_path):
    path = make_audio("a.wav", 2.0)
    embed_files([path], tmp_path / "c", extractor=embedder, workers=0, progress=False, root=tmp_path)
    other = Embedder(ckpt_path, batch_size=16, hop_seconds=0.48)
    with pytest.raises(DataError, match="other frontend settings.*--overwrite"):
        embed_files([path], tmp_path / "c", extractor=other, workers=0, progress=False, root=tmp_path)
    summary = embed_files(
        [path], tmp_path / "c", extractor=other, workers=0, overwrite=True, progress=False, root=tmp_path
    )
    assert summary["embedded"] == 1
    assert cache.read_entry(tmp_path / "c", "a.wav")["embedding"].shape == (3, 128)


def test_postprocessed_cache_is_uint8(ckpt_path, pca_params, make_audio, tmp_path):
    post = Embedder(ckpt_path, batch_size=8, postprocess=True, pca_params=pca_params)
    path = make_audio("a.wav", 2.0)
    embed_files([path], tmp_path, extractor=post, workers=0, progress=False, root=tmp_path)
    entry = cache.read_entry(tmp_path, "a.wav", weights=post.network_id)
    assert entry["embedding"].dtype == np.uint8 and (entry["kind"], entry["pca"]) == ("postprocessed", post.pca_id)
    # the embedding (its provenance record) names the PCA parameters; the entry's weights name the network alone
    assert provenance.of_extractor(post)["pca"] == post.pca_id and not entry["weights"].endswith("+pca")


def test_no_inputs(embedder, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        embed_files([tmp_path / "empty"], tmp_path / "c", extractor=embedder)
    with pytest.raises(DataError, match="no such file"):
        embed_files([tmp_path / "missing"], tmp_path / "c", extractor=embedder)


def test_embedder_options_conflict(embedder):
    with pytest.raises(ParameterError):
        embed(np.zeros(16000), 16000, embedder=embedder, batch_size=3)


@pytest.mark.backends
@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_low_precision_within_its_stated_tolerance(ckpt_path, embedder, gtzan_files, precision):
    from tagger.embedding.embed import FLOAT16_TOLERANCE

    patches, _ = frontend.waveform_to_patches(audio.load(gtzan_files[1])[: 8 * 16000])
    low = Embedder(ckpt_path, batch_size=16, dtype=precision, frontend_kind="reference")  # the network's precision
    reference = embedder.run(patches)
    rel = np.abs(low.run(patches) - reference).max() / np.abs(reference).max()
    assert rel < (FLOAT16_TOLERANCE if precision == "float16" else 0.02), rel
    assert low.network_id == embedder.network_id + "+" + precision  # cache entries say which precision made them


@pytest.mark.backends
def test_auto_precision_is_recorded_as_what_it_resolved_to(ckpt_path, monkeypatch):
    monkeypatch.setattr(backend, "gpus", lambda: [])  # a CPU (tests/test_backends.py has the GPU cases)
    monkeypatch.setattr(backend, "cpu_flags", lambda cpuinfo=None: frozenset())  # without bfloat16: float32
    auto = Embedder(ckpt_path, batch_size=16, dtype="auto")
    assert auto.dtype == "float32" and "+" not in auto.network_id  # float32 carries no suffix in the id
