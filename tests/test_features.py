"""Handcrafted features: against direct librosa calls, against the GTZAN table, and as a training input."""

import json
import subprocess
import sys

import librosa
import numpy as np
import pandas as pd
import pytest
from helpers import make_config

from tagger.embedding import cache, params
from tagger.embedding.features import FEATURE_NAMES, FeatureExtractor, features_to_file, handcrafted, read_table
from tagger.exceptions import AudioError, DataError, ParameterError

SR = params.FEATURE_SAMPLE_RATE


def _direct(y):
    """The same features from plain librosa calls, spelled out (reflect-padded frames, as the table's librosa did)."""
    kw = dict(n_fft=2048, hop_length=512)
    S = np.abs(librosa.stft(y, pad_mode="reflect", **kw))
    h, p = librosa.decompose.hpss(librosa.stft(y, pad_mode="reflect", **kw))
    frames = [
        librosa.feature.chroma_stft(S=S**2, sr=SR, **kw),
        librosa.feature.rms(y=y, frame_length=2048, hop_length=512, pad_mode="reflect"),
        librosa.feature.spectral_centroid(S=S, sr=SR, **kw),
        librosa.feature.spectral_bandwidth(S=S, sr=SR, **kw),
        librosa.feature.spectral_rolloff(S=S, sr=SR, **kw),
        librosa.feature.zero_crossing_rate(y, frame_length=2048, hop_length=512),
        librosa.util.fix_length(librosa.istft(h, hop_length=512), size=len(y)),
        librosa.util.fix_length(librosa.istft(p, hop_length=512), size=len(y)),
    ]
    out = {}
    for name, f in zip(
        [
            "chroma_stft",
            "rms",
            "spectral_centroid",
            "spectral_bandwidth",
            "rolloff",
            "zero_crossing_rate",
            "harmony",
            "perceptr",
        ],
        frames,
    ):
        out[f"{name}_mean"], out[f"{name}_var"] = np.mean(f), np.var(f)
    out["tempo"] = np.atleast_1d(librosa.beat.beat_track(y=y, sr=SR, hop_length=512)[0])[0]
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(librosa.feature.melspectrogram(S=S**2, sr=SR, **kw)), n_mfcc=20)
    for i, row in enumerate(mfcc, 1):
        out[f"mfcc{i}_mean"], out[f"mfcc{i}_var"] = np.mean(row), np.var(row)
    return np.array([out[n] for n in FEATURE_NAMES])


@pytest.mark.filterwarnings("ignore:Trying to estimate tuning")  # the direct calls' warning on silence
@pytest.mark.parametrize("signal", ["sine", "noise", "silence"])
def test_features_match_direct_librosa_calls(signal):
    t = np.arange(int(3.0 * SR)) / SR
    rng = np.random.default_rng(0)
    y = {
        "sine": 0.5 * np.sin(2 * np.pi * 440 * t),
        "noise": 0.1 * rng.standard_normal(len(t)),
        "silence": np.zeros(len(t)),
    }[signal].astype(np.float32)
    got = handcrafted(y, SR)
    assert got.shape == (57,) and got.dtype == np.float64
    np.testing.assert_allclose(got, _direct(y), rtol=1e-6, atol=1e-9)
    if signal == "sine":  # and they mean what they say
        assert abs(got[FEATURE_NAMES.index("spectral_centroid_mean")] - 440) < 30
        assert got[FEATURE_NAMES.index("rms_mean")] == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_features_resample_and_downmix_arrays():
    t = np.arange(16000 * 2) / 16000
    stereo = np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 300 * t)], axis=1).astype(np.float32) * 0.3
    got = handcrafted(stereo, 16000)
    assert abs(got[FEATURE_NAMES.index("spectral_centroid_mean")] - 300) < 30
    with pytest.raises(AudioError, match="shorter than one 2048-sample frame"):
        handcrafted(np.zeros(1000, np.float32), SR)


def test_librosa_kernels_are_compiled_under_the_numba_cache_lock(tmp_path, monkeypatch):
    """Two processes compiling librosa's cached gufuncs at once can leave a cache that crashes every later load
    (seen in CI: every feature process a segmentation fault), so the first use in a process waits for the lock."""
    import threading

    from tagger import locks
    from tagger.embedding import kernels

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    assert kernels.lock_path() == str(tmp_path / "numba" / "tagger-numba.lock")
    monkeypatch.setattr(kernels, "_WARMED", set())  # as in a new process
    calls = []
    real_import = kernels.importlib.import_module

    def importing(name, *args):  # what waits for the lock starts no compiling import (however slow that would be)
        if name in kernels.COMPILING_MODULES:
            calls.append(f"import {name}")
        return real_import(name, *args)

    monkeypatch.setattr(kernels.importlib, "import_module", importing)
    worker = threading.Thread(target=kernels.import_librosa, kwargs={"warm": lambda: calls.append("warm")})
    with locks.exclusive(kernels.lock_path(), what="the test's hold"):  # another process compiling
        worker.start()
        worker.join(timeout=2.0)
        assert worker.is_alive() and calls == []
    worker.join(timeout=60)
    assert not worker.is_alive() and calls[-1] == "warm"
    calls.clear()

    def another():
        calls.append("another")

    for _ in range(2):  # another warm-up runs once, and not at all again
        kernels.import_librosa(warm=another)
    assert calls == ["another"]


@pytest.mark.slow
def test_the_ten_gtzan_tracks_match_the_table(shared, gtzan_files, tmp_path):
    """The acceptance check: every mean within 2 %, every variance within 5 %, tempo equal (or a factor 2)."""
    table = read_table(shared / "data/gtzan/features/features_30_sec.csv")
    assert list(table.columns[2:59]) == list(FEATURE_NAMES)  # the table's own order
    out = tmp_path / "f.csv"
    summary = features_to_file([str(p) for p in gtzan_files], out, workers=1, progress=False)
    assert summary["extracted"] == 10 and summary["failed"] == 0
    got = pd.read_csv(out)
    ref = table.set_index(table["filename"].str.replace(".wav", "", regex=False)).loc[
        got["filename"].str.replace(".au", "", regex=False)
    ]
    assert (got["length"].to_numpy() == ref["length"].to_numpy()).all()
    for name in FEATURE_NAMES:
        a, b = got[name].to_numpy(), ref[name].to_numpy()
        if name == "tempo":
            ratio = a / b
            assert np.all(np.isclose(ratio, 1) | np.isclose(ratio, 2) | np.isclose(ratio, 0.5)), (name, a, b)
            continue
        rel = np.abs(a - b) / np.abs(b)
        assert rel.max() < (0.02 if name.endswith("_mean") else 0.05), (name, rel.max())


@pytest.mark.integration
def test_features_to_file_resumes_lists_failures_and_refuses_other_settings(make_audio, tmp_path):
    good = [make_audio(f"clips/c{i}.wav", 2.0, freq=200.0 + 100 * i) for i in range(3)]
    bad = tmp_path / "clips/bad.wav"
    bad.write_bytes(b"not audio")
    out = tmp_path / "features.csv"
    first = features_to_file([str(good[0])], out, workers=0, progress=False)
    assert first["extracted"] == 1
    again = features_to_file([str(tmp_path / "clips")], out, workers=1, progress=False)
    assert (again["extracted"], again["skipped"], again["failed"]) == (2, 1, 1)
    df = pd.read_csv(out)
    assert sorted(df["filename"]) == ["c0.wav", "c1.wav", "c2.wav"] and list(df.columns[3:]) == list(FEATURE_NAMES)
    errors = pd.read_csv(again["errors_file"], sep="\t")
    assert errors["path"].str.endswith("bad.wav").all() and "not a readable audio file" in errors["error"][0]
    meta = json.loads((tmp_path / "features.csv.meta.json").read_text())
    meta["settings"]["features"]["hop_length"] = 256
    (tmp_path / "features.csv.meta.json").write_text(json.dumps(meta))
    with pytest.raises(ParameterError, match="hop_length"):
        features_to_file([str(tmp_path / "clips")], out, workers=0, progress=False)
    parquet = features_to_file([str(p) for p in good], tmp_path / "f.parquet", workers=0, progress=False)
    assert parquet["extracted"] == 3 and len(pd.read_parquet(tmp_path / "f.parquet")) == 3
    assert not (tmp_path / "f.parquet.partial.csv").exists()


@pytest.mark.integration
def test_cli_features(make_audio, tmp_path):
    make_audio("a/x.wav", 1.5)
    done = subprocess.run(
        [sys.executable, "-m", "tagger", "features", "a", "--out", "t.csv", "--workers", "0", "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "extracted 1, skipped 0 (done before), failed 0 of 1 files" in done.stdout, (
        done.stderr
    )


def test_prepare_table_joins_the_splits_by_stem(shared, tmp_path):
    from tagger.datasets import gtzan

    index = pd.read_csv(
        gtzan.prepare_table(
            shared / "data/gtzan/features/features_30_sec.csv", shared / "data/gtzan/splits/dnn-mgr", tmp_path
        )
    )
    assert index["split"].value_counts().to_dict() == {"train": 443, "test": 290, "valid": 197}
    assert sorted(index["fold"].unique()) == [0, 1, 2, 3, 4]
    assert "blues/blues.00000.wav" in set(index["track_id"])  # its path in the genres/ tree
    entry = cache.read_entry(
        tmp_path / "cache", "blues/blues.00000.wav", frontend=params.feature_params(), weights=params.FEATURE_SET
    )
    assert entry["kind"] == "features" and entry["embedding"].shape == (1, 57)
    assert entry["embedding"][0, FEATURE_NAMES.index("tempo")] == pytest.approx(123.046875)


def test_a_table_without_a_feature_column_is_refused(shared, tmp_path):
    from tagger.datasets import gtzan

    bad = tmp_path / "t.csv"
    pd.DataFrame({"filename": ["blues.00000.wav"], "length": [1]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="chroma_stft_mean"):
        gtzan.prepare_table(bad, shared / "data/gtzan/splits/dnn-mgr", tmp_path / "out")


@pytest.mark.slow
def test_mlp_trains_on_features_and_tags_audio(shared, gtzan_files, tmp_path):
    """One pipeline, another input: prepare from audio with --features, train an mlp head, evaluate, tag audio."""
    from tagger.datasets import gtzan
    from tagger.tagging.api import Tagger
    from tagger.training.evaluate import evaluate
    from tagger.training.train import train

    gtzan.prepare(
        shared / "data/gtzan/genres",
        shared / "data/gtzan/splits/dnn-mgr",
        tmp_path / "data",
        split="stratified",
        extractor=FeatureExtractor(),
        workers=1,
        progress=False,
    )
    index = pd.read_csv(tmp_path / "data/index.csv")
    # ten tracks make a tiny dataset: train on the train split, validate on every track (a smoke test, not a result)
    pd.concat([index[index["split"] == "train"], index.assign(split="valid")]).to_csv(
        tmp_path / "data/index.csv", index=False
    )
    cfg = {
        **make_config(tmp_path / "data", data={"task": "singlelabel"}),
        "head": {"name": "mlp", "hidden": 32, "n_layers": 1},
        "window": 1,
        "batch_size": 8,
        "epochs": 3,
        "steps_per_epoch": 5,
        "mux": {"n_active": 8, "rate": 2.0},
    }
    run = tmp_path / "run"
    train(cfg, str(run), verbose=0)
    assert json.loads((run / "bundle.json").read_text())["embedding"] == "features"
    import keras

    model = keras.saving.load_model(run / "model.keras")
    norm = model.get_layer("standardize")  # the scaler is part of the saved model
    assert float(np.max(np.abs(norm.mean))) > 100  # spectral centroids, not the identity
    summary = evaluate(str(run), split="valid", plots=False)
    assert summary["n_clips"] == 10
    tagger = Tagger(str(run), cache_dir=str(tmp_path / "tagcache"))
    df = tagger.tag([str(gtzan_files[0])], workers=0)
    assert len(df) == 1 and df["tags"][0] in gtzan.GENRES
    entry = cache.read_entry(next((tmp_path / "tagcache").rglob("*.pkl")))  # stored, as features
    assert entry["kind"] == "features" and entry["weights"] == params.FEATURE_SET


def test_a_file_too_long_to_hold_whole_is_refused_by_name_and_the_rest_done(make_audio, tmp_path, monkeypatch):
    """Features hold a whole file in memory: past the limit a file is refused from its header, not decoded."""
    monkeypatch.setattr(params, "WHOLE_FILE_MAX_SECONDS", 5.0)  # in-process (workers=0): a short stand-in limit
    short = make_audio("clips/short.wav", 2.0)
    long = make_audio("clips/long.wav", 6.0)
    summary = features_to_file([str(short), str(long)], tmp_path / "f.csv", workers=0, progress=False)
    assert (summary["extracted"], summary["failed"]) == (1, 1)
    errors = pd.read_csv(summary["errors_file"], sep="\t")
    assert errors["path"].tolist() == [str(long)]
    assert "6 s of audio" in errors["error"][0] and "over 5 s are refused" in errors["error"][0]
