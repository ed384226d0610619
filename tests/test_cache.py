import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import run_in_process

from tagger.embedding import cache
from tagger.embedding.vggish import params
from tagger.exceptions import DataError, ParameterError


def entry(n=3, dtype=np.float32):
    emb = np.arange(n * 128).reshape(n, 128).astype(dtype)
    kind, pca = ("postprocessed", "pca1") if dtype == np.uint8 else ("raw", None)
    return cache.make_entry(
        emb,
        np.arange(n) * 0.96,
        kind=kind,
        pca=pca,
        frontend=params.frontend_params(),
        weights="w1",
        source="a.wav",
        fingerprint="3:abc",
        duration=3.1,
    )


def test_round_trip(tmp_path):
    path = cache.write_entry(tmp_path, "genre/a.wav", entry())
    assert path == str(tmp_path / "genre" / "a.wav.pkl")
    got = cache.read_entry(tmp_path, "genre/a.wav", frontend=params.frontend_params(), weights="w1")
    np.testing.assert_array_equal(got["embedding"], entry()["embedding"])
    assert got["format"] == cache.FORMAT and got["duration"] == 3.1


def test_uint8_dequantised_on_read(tmp_path):
    e = entry(dtype=np.uint8)
    cache.write_entry(tmp_path, "q", e)
    got = cache.embedding_as_float(cache.read_entry(tmp_path, "q"))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, e["embedding"] / 255 * 4 - 2, atol=1e-6)


@pytest.mark.parametrize(
    "field,value,match,reason",
    [
        ("frontend", params.frontend_params(hop_seconds=0.48), "other frontend settings", "settings"),
        ("weights", "w2", "network w1", "settings"),
        ("fingerprint", "3:abd", "a.wav changed", "source"),
    ],
)
def test_stale_entries_refused(tmp_path, field, value, match, reason):
    cache.write_entry(tmp_path, "a", entry())
    with pytest.raises(cache.StaleEntry, match=match) as caught:
        cache.read_entry(tmp_path, "a", **{field: value})
    assert caught.value.reason == reason


def test_previous_format_refused_with_the_way_to_migrate(tmp_path):
    """A format 1 entry (tagger 0.1: no kind, no fingerprint, ids that could collide) is never reinterpreted."""
    old = {
        "format": 1,
        "embedding": np.zeros((2, 128), np.float32),
        "timestamps": np.zeros(2),
        "frontend": {},
        "weights": "w1",
        "source": "a.wav",
        "duration": 2.0,
    }
    (tmp_path / "old.pkl").write_bytes(pickle.dumps(old))
    with pytest.raises(cache.StaleEntry, match="cache format 1.*--overwrite") as caught:
        cache.read_entry(tmp_path, "old")
    assert caught.value.reason == "format"


def test_raw_entries_serve_postprocessed_readers(tmp_path, pca_params):
    from tagger.embedding.vggish.postprocess import Postprocessor

    post = Postprocessor(pca_params)
    raw, quantised = entry(), entry(dtype=np.uint8)
    assert cache.serves(raw, "raw") and cache.serves(raw, "postprocessed", post.id)
    assert not cache.serves(quantised, "raw") and not cache.serves(quantised, "postprocessed", post.id)
    assert cache.serves(quantised, "postprocessed", "pca1")
    np.testing.assert_array_equal(cache.embedding_for(raw, post), post(raw["embedding"]))
    np.testing.assert_array_equal(cache.embedding_for(raw), raw["embedding"])
    with pytest.raises(DataError, match="postprocessed embeddings only"):
        cache.embedding_for(quantised)


def test_entries_honour_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = cache.write_entry(tmp_path, "shared/a", entry())
        assert oct(os.stat(path).st_mode & 0o777) == oct(0o640)  # group-readable, as the umask allows
    finally:
        os.umask(old)


def test_make_entry_checks_kind():
    with pytest.raises(ParameterError, match="kind"):
        cache.make_entry(np.zeros((1, 128)), np.zeros(1), kind="whitened", frontend={}, weights="w", source="s")
    with pytest.raises(DataError, match="PCA"):
        cache.make_entry(
            np.zeros((1, 128), np.uint8), np.zeros(1), kind="postprocessed", frontend={}, weights="w", source="s"
        )


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ["EVIL_MARKER"],))


def test_restricted_unpickler_refuses_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    planted = tmp_path / "evil.pkl"
    planted.write_bytes(pickle.dumps({"format": 2, "embedding": _Evil()}))
    with pytest.raises(DataError, match="posix.system|os.system|not allowed"):
        cache.read_entry(str(planted))
    assert not marker.exists()
    # a plain pickle.load would have run it: the fixture is really malicious
    pickle.loads(planted.read_bytes())
    assert marker.exists()


def test_corrupt_entry(tmp_path):
    (tmp_path / "x.pkl").write_bytes(b"\x80\x05garbage")
    with pytest.raises(DataError, match="x.pkl"):
        cache.read_entry(str(tmp_path / "x.pkl"))


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        cache.write_entry(tmp_path, "a", entry())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["", "../up", "/abs", "a/../../b"])
def test_bad_track_ids(tmp_path, bad):
    with pytest.raises(ParameterError):
        cache.entry_path(tmp_path, bad)


def test_bad_shapes():
    with pytest.raises(DataError, match="shape"):
        cache.make_entry(np.zeros((3, 64)), np.zeros(3), kind="raw", frontend={}, weights="w", source="s")
    with pytest.raises(DataError, match="timestamps"):
        cache.make_entry(np.zeros((3, 128)), np.zeros(2), kind="raw", frontend={}, weights="w", source="s")


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from tagger import cli

    calls = {"n": 0}
    real_replace = os.replace

    def replace_then_die(src, dst):
        calls["n"] += str(dst).endswith(".pkl")  # cache entries' renames (not the weights-id memo's)
        if calls["n"] == int(os.environ["KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-write: temp file written, not renamed
        return real_replace(src, dst)

    os.replace = replace_then_die
    sys.exit(cli.main(sys.argv[1:]))
    """
)


def _run(args, env, cwd):
    env = {**os.environ, **env}
    cmd = [sys.executable, "-c", KILLER, *args]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def _entries(folder):
    return {
        p.relative_to(folder).as_posix(): cache.read_entry(str(p))
        for p in sorted(folder.rglob("*.pkl"))
        if not p.name.startswith(".")
    }


@pytest.mark.slow
def test_killed_then_resumed_equals_uninterrupted(tmp_path, make_audio, ckpt_path):
    for i in range(6):
        make_audio(f"music/{i}.wav", 2.0 + i, freq=200.0 * (i + 1), seed=i)
    common = [
        "embed",
        str(tmp_path / "music"),
        "--weights",
        ckpt_path,
        "--batch-size",
        "4",
        "--workers",
        "1",
        "--no-progress",
    ]
    # the uninterrupted run in this process (its decode worker a process); the killed one and its resumption in
    # processes of their own
    full = run_in_process(common + ["--out", str(tmp_path / "full")], cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    killed = _run(common + ["--out", str(tmp_path / "part")], {"KILL_AT": "3"}, tmp_path)
    assert killed.returncode == -signal.SIGKILL
    partial = _entries(tmp_path / "part")
    assert len(partial) == 2  # two entries done, the third killed between write and rename
    assert any(p.name.startswith(".tmp-") for p in (tmp_path / "part").rglob("*"))
    resumed = _run(common + ["--out", str(tmp_path / "part")], {"KILL_AT": "999"}, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "skipped 2" in resumed.stdout
    a, b = _entries(tmp_path / "full"), _entries(tmp_path / "part")
    assert sorted(a) == sorted(b) and len(a) == 6
    for key in a:
        assert a[key]["weights"] == b[key]["weights"]
        np.testing.assert_array_equal(a[key]["timestamps"], b[key]["timestamps"])
        np.testing.assert_allclose(a[key]["embedding"], b[key]["embedding"], rtol=0, atol=1e-5)


def test_a_stop_signal_as_the_temporary_file_is_made_leaves_none(tmp_path, monkeypatch):
    """SIGTERM arriving after mkstemp made the file and before write_atomic knew its name left a .tmp-* behind
    (CI: a preempted cloud step copied one back to the bucket); the name is now known before the file exists."""
    from tagger import records

    class Stop(Exception):
        pass

    def stop(signum, frame):
        raise Stop

    real = records._create

    def create_then_signal(path):
        made = real(path)
        os.kill(os.getpid(), signal.SIGTERM)  # as a preemption does, with the file made and not yet returned
        return made

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with monkeypatch.context() as patched, pytest.raises(Stop):
            patched.setattr(records, "_create", create_then_signal)
            records.write_atomic(tmp_path / "entry.pkl", lambda f: f.write("x"))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert os.listdir(tmp_path) == []
    records.write_atomic(tmp_path / "entry.pkl", lambda f: f.write("x"))  # and a write without a signal is whole
    assert os.listdir(tmp_path) == ["entry.pkl"] and (tmp_path / "entry.pkl").read_text() == "x"
