import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tagger import cache, params
from tagger.exceptions import DataError, ParameterError


def entry(n=3, dtype=np.float32):
    emb = np.arange(n * 128).reshape(n, 128).astype(dtype)
    return cache.make_entry(emb, np.arange(n) * 0.96, frontend=params.frontend_params(), weights="w1", source="a.wav", duration=3.1)


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
    "field,value,match",
    [("frontend", params.frontend_params(hop_seconds=0.48), "frontend differs"), ("weights", "w2", "weights w1")],
)
def test_stale_entries_refused(tmp_path, field, value, match):
    cache.write_entry(tmp_path, "a", entry())
    with pytest.raises(DataError, match=match):
        cache.read_entry(tmp_path, "a", **{field: value})


def test_wrong_format_refused(tmp_path):
    e = entry()
    e["format"] = 0
    cache.write_entry(tmp_path, "old", e)
    with pytest.raises(DataError, match="cache format 0"):
        cache.read_entry(tmp_path, "old")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ["EVIL_MARKER"],))


def test_restricted_unpickler_refuses_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    planted = tmp_path / "evil.pkl"
    planted.write_bytes(pickle.dumps({"format": 1, "embedding": _Evil()}))
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
        cache.make_entry(np.zeros((3, 64)), np.zeros(3), frontend={}, weights="w", source="s")
    with pytest.raises(DataError, match="timestamps"):
        cache.make_entry(np.zeros((3, 128)), np.zeros(2), frontend={}, weights="w", source="s")


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from tagger import cli

    calls = {"n": 0}
    real_replace = os.replace

    def replace_then_die(src, dst):
        calls["n"] += 1
        if calls["n"] == int(os.environ["KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-write: temp file written, not renamed
        return real_replace(src, dst)

    os.replace = replace_then_die
    sys.exit(cli.main(sys.argv[1:]))
    """
)


def _run(args, env=None):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", KILLER, *args], env=env, capture_output=True, text=True, timeout=600)


def _entries(folder):
    return {p.relative_to(folder).as_posix(): cache.read_entry(str(p)) for p in sorted(folder.rglob("*.pkl")) if not p.name.startswith(".")}


def test_killed_then_resumed_equals_uninterrupted(tmp_path, make_audio, ckpt_path):
    for i in range(6):
        make_audio(f"music/{i}.wav", 2.0 + i, freq=200.0 * (i + 1), seed=i)
    common = ["embed", str(tmp_path / "music"), "--weights", ckpt_path, "--batch-size", "4", "--workers", "1", "--no-progress"]
    full = _run(common + ["--out", str(tmp_path / "full")], {"KILL_AT": "999"})
    assert full.returncode == 0, full.stderr
    killed = _run(common + ["--out", str(tmp_path / "part")], {"KILL_AT": "3"})
    assert killed.returncode == -signal.SIGKILL
    partial = _entries(tmp_path / "part")
    assert len(partial) == 2  # two entries done, the third killed between write and rename
    assert any(p.name.startswith(".tmp-") for p in (tmp_path / "part").rglob("*"))
    resumed = _run(common + ["--out", str(tmp_path / "part")], {"KILL_AT": "999"})
    assert resumed.returncode == 0, resumed.stderr
    assert "skipped 2" in resumed.stdout
    a, b = _entries(tmp_path / "full"), _entries(tmp_path / "part")
    assert sorted(a) == sorted(b) and len(a) == 6
    for key in a:
        assert a[key]["weights"] == b[key]["weights"]
        np.testing.assert_array_equal(a[key]["timestamps"], b[key]["timestamps"])
        np.testing.assert_allclose(a[key]["embedding"], b[key]["embedding"], rtol=0, atol=1e-5)
