"""No silent wrong results: outputs and caches know what made them (through the CLI: in this process, or in processes
 of their own where the behaviour is a process's: concurrent writers, kills, permissions).

Each test starts from a case that used to give a wrong answer with exit 0 and checks that it is gone:
reruns with other settings, files with the same name in two folders sharing a cache, awkward file names,
concurrent writers, `embed` then `tag --cache`, read-only caches, bad config values.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from helpers import run_in_process, write_audio, write_head_bundle

from tagger import locks, records
from tagger.exceptions import DataError

# the tagger command, counting VGGish network calls into $CALLS_FILE and, when asked, pausing at the first
# row until $RELEASE exists (holding the output's lock while another process tries it) or dying at row $DIE
WRAPPER = textwrap.dedent(
    """
    import importlib, os, signal, sys, time
    from tagger import cli
    from tagger.tagging import writer
    Embedder = importlib.import_module("tagger.embedding.vggish.extractor").Embedder
    calls, count = {"n": 0}, {"rows": 0}
    real_run, real_rows = Embedder.run, writer.csv_row
    def run(self, patches):
        calls["n"] += 1
        return real_run(self, patches)
    def rows(*a, **k):
        count["rows"] += 1
        if count["rows"] == int(os.environ.get("DIE", "0")):  # killed before its row is written
            os.kill(os.getpid(), signal.SIGKILL)
        if os.environ.get("MARKER") and not os.path.exists(os.environ["MARKER"]):
            open(os.environ["MARKER"], "w").close()
            deadline = time.time() + float(os.environ.get("PAUSE", "0"))  # until $RELEASE exists, at most PAUSE s
            while time.time() < deadline and not os.path.exists(os.environ.get("RELEASE", "")):
                time.sleep(0.1)
        return real_rows(*a, **k)
    Embedder.run, writer.csv_row = run, rows
    status = cli.main(sys.argv[1:])
    if os.environ.get("CALLS_FILE"):
        with open(os.environ["CALLS_FILE"], "w") as f:
            f.write(str(calls["n"]))
    sys.exit(status)
    """
)


def tagger(*args, cwd, env=None, timeout=300, unprivileged=False, popen=False):
    """Run the tagger command in a subprocess (through WRAPPER) in ``cwd``."""
    cmd = [sys.executable, "-c", WRAPPER, *map(str, args)]
    if unprivileged and os.geteuid() == 0:
        # root writes anywhere: without these capabilities it obeys file permissions like any user
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *cmd]
    full_env = {**os.environ, **(env or {})}
    if popen:
        return subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def tagger_here(*args, cwd, env=None):
    """:func:`tagger`'s counting of network calls (``CALLS_FILE``), in this process (helpers.run_in_process)."""
    from tagger.embedding.vggish.extractor import Embedder

    calls = {"n": 0}
    real_run = Embedder.run

    def run(self, patches):
        calls["n"] += 1
        return real_run(self, patches)

    Embedder.run = run
    try:
        done = run_in_process(args, cwd=cwd)
    finally:
        Embedder.run = real_run
    if (env or {}).get("CALLS_FILE"):
        with open(env["CALLS_FILE"], "w") as f:
            f.write(str(calls["n"]))
    return done


def calls_of(result_env):
    with open(result_env["CALLS_FILE"]) as f:
        return int(f.read())


@pytest.fixture(scope="session")
def heads(tmp_path_factory):
    """Two different raw-embedding heads in the bundle layout."""
    base = tmp_path_factory.mktemp("heads")
    return write_head_bundle(base / "one", seed=0), write_head_bundle(base / "two", seed=1)


@pytest.fixture
def clips(tmp_path):
    """A work folder with three short clips under clips/."""
    for i in range(3):
        write_audio(tmp_path / "clips" / f"c{i}.wav", 1.5 + i, freq=300.0 * (i + 1), seed=i)
    return tmp_path


def common(ckpt_path):
    return ["--weights", ckpt_path, "--workers", "0", "--no-progress"]


@pytest.mark.slow
def test_rerun_with_other_settings_is_refused(clips, heads, ckpt_path):
    one, two = heads
    out = clips / "t.csv"
    first = tagger_here("tag", "clips", "--model", one, "--out", out, "--top-n", 3, *common(ckpt_path), cwd=clips)
    assert first.returncode == 0, first.stderr[-2000:]
    before = out.read_bytes()
    meta = json.loads((clips / "t.csv.meta.json").read_text())["settings"]
    assert (
        meta["top_n"] == 3
        and meta["model"]["hash"].startswith("sha256:")
        and meta["weights"].startswith("vggish-sha1:")
    )

    for change, named in (
        (["--model", two, "--top-n", 3], "model:"),
        (["--model", one, "--top-n", 2], "top_n: 3 then, 2 now"),
        (["--model", one, "--top-n", 3, "--hop", 0.48], "frontend:"),
    ):
        again = tagger_here("tag", "clips", "--out", out, *change, *common(ckpt_path), cwd=clips)
        assert again.returncode == 1, again.stderr[-2000:]
        assert named in again.stderr and "--overwrite" in again.stderr and "another --out" in again.stderr
        assert out.read_bytes() == before  # untouched

    replaced = tagger_here(
        "tag", "clips", "--model", two, "--out", out, "--top-n", 2, "--overwrite", *common(ckpt_path), cwd=clips
    )
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    df = pd.read_csv(out)
    assert list(df.columns) == ["path", "duration", "tag_1", "p_1", "tag_2", "p_2", "tags"] and len(df) == 3
    resumed = tagger_here("tag", "clips", "--model", two, "--out", out, "--top-n", 2, *common(ckpt_path), cwd=clips)
    assert resumed.returncode == 0 and "tagged 0, skipped 3" in resumed.stdout

    # an output of the previous format (no settings recorded) is refused, not continued
    (clips / "t.csv.meta.json").unlink()
    legacy = tagger_here("tag", "clips", "--model", two, "--out", out, "--top-n", 2, *common(ckpt_path), cwd=clips)
    assert legacy.returncode == 1 and "no t.csv.meta.json" in legacy.stderr and "--overwrite" in legacy.stderr


@pytest.mark.slow
def test_same_name_in_two_folders_with_a_shared_cache(tmp_path, heads, ckpt_path):
    one, _ = heads
    write_audio(tmp_path / "a/sub1/same.au", 3.0, sr=22050, freq=220.0, seed=1)
    write_audio(tmp_path / "a/sub2/same.au", 3.0, sr=22050, freq=3000.0, amplitude=0.9, seed=2)
    args = ["--model", one, *common(ckpt_path)]
    for n, sub in ((1, "sub1"), (2, "sub2")):
        result = tagger_here("tag", f"a/{sub}/same.au", "--cache", "c", "--out", f"t{n}.csv", *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    fresh = tagger_here("tag", "a/sub2/same.au", "--out", "fresh.csv", *args, cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    p1, p2, p_fresh = (
        pd.read_csv(tmp_path / f).filter(like="p_").to_numpy() for f in ("t1.csv", "t2.csv", "fresh.csv")
    )
    assert not np.allclose(p1, p2, atol=1e-3)  # the second file did not get the first one's tags
    np.testing.assert_allclose(p2, p_fresh, atol=1e-5)
    assert sorted(p.relative_to(tmp_path / "c").as_posix() for p in (tmp_path / "c").rglob("*.pkl")) == [
        "a/sub1/same.au.pkl",
        "a/sub2/same.au.pkl",
    ]

    # both as arguments, and in a playlist: no refusal, two clips
    (tmp_path / "list.m3u").write_text("a/sub1/same.au\na/sub2/same.au\n")
    for inputs in (["a/sub1/same.au", "a/sub2/same.au"], ["list.m3u"]):
        both = tagger_here("tag", *inputs, "--cache", "c", "--out", f"both{len(inputs)}.csv", *args, cwd=tmp_path)
        assert both.returncode == 0 and "tagged 2" in both.stdout, both.stderr[-2000:]
    embedded = tagger_here("embed", "a/sub1/same.au", "a/sub2/same.au", "--out", "c2", *common(ckpt_path), cwd=tmp_path)
    assert embedded.returncode == 0 and "embedded 2" in embedded.stdout, embedded.stderr[-2000:]

    # the audio behind a cache entry changes: re-embedded with a warning, never reused
    write_audio(tmp_path / "a/sub1/same.au", 3.0, sr=22050, freq=3000.0, amplitude=0.9, seed=2)
    changed = tagger_here("tag", "a/sub1/same.au", "--cache", "c", "--out", "t3.csv", *args, cwd=tmp_path)
    assert changed.returncode == 0 and "changed since it was embedded" in changed.stderr, changed.stderr[-2000:]
    np.testing.assert_allclose(pd.read_csv(tmp_path / "t3.csv").filter(like="p_").to_numpy(), p_fresh, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_awkward_names_are_tagged_once(tmp_path, heads, ckpt_path, fmt):
    names = ["new\nline.wav", "tab\there.wav", "para\u2028sep.wav", 'quote"comma,.wav']
    for i, name in enumerate(names):
        write_audio(tmp_path / "clips" / name, 1.2, seed=i)
    (tmp_path / "clips" / "bad\nname\t.wav").write_text("not audio\n")
    out = tmp_path / f"t.{fmt}"
    args = ["tag", "clips", "--model", heads[0], "--out", out, *common(ckpt_path)]
    first = tagger_here(*args, cwd=tmp_path)
    assert first.returncode == 3 and "tagged 4, skipped 0 (done before), failed 1 of 5" in first.stdout, first.stderr[
        -2000:
    ]
    again = tagger_here(*args, cwd=tmp_path)
    assert again.returncode == 3 and "tagged 0, skipped 5 (done before), failed 1 of 5" in again.stdout, again.stderr[
        -2000:
    ]
    if fmt == "csv":
        paths = pd.read_csv(out)["path"].tolist()
    else:
        paths = [json.loads(line)["path"] for line in out.read_text(encoding="utf-8").split("\n") if line]
    assert sorted(paths) == sorted(os.path.join("clips", n) for n in names)
    errors = pd.read_csv(f"{out}.errors.tsv", sep="\t")
    assert errors["path"].tolist() == [os.path.join("clips", "bad\nname\t.wav")] and errors["error"].str.len().min() > 0


@pytest.mark.slow
def test_concurrent_writers_and_a_stale_lock(clips, heads, ckpt_path):
    args = ["tag", "clips", "--model", heads[0], *common(ckpt_path)]
    marker = clips / "first-row-written"
    release = clips / "second-refused"
    first = tagger(
        *args,
        "--out",
        "t.csv",
        cwd=clips,
        popen=True,
        env={"MARKER": str(marker), "RELEASE": str(release), "PAUSE": "240"},
    )
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), first.communicate()[1][-2000:]
    try:
        started = time.time()
        second = tagger(*args, "--out", "t.csv", cwd=clips)
        assert second.returncode == 1 and time.time() - started < 60
        assert "output t.csv is in use by pid" in second.stderr and f"pid {first.pid} " in second.stderr, second.stderr[
            -2000:
        ]
    finally:
        release.touch()  # the first writer holds its lock until the second is refused, however slow its start
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    df = pd.read_csv(clips / "t.csv")
    assert len(df) == 3 and df["path"].is_unique and not (df["path"] == "path").any()  # one header, one row per clip

    # a writer killed with SIGKILL leaves its lock file, but not its lock: the next run continues the output
    killed = tagger(*args, "--out", "k.csv", cwd=clips, env={"DIE": "2"})
    assert killed.returncode == -signal.SIGKILL and (clips / "k.csv.lock").exists()
    resumed = tagger(*args, "--out", "k.csv", cwd=clips)
    assert resumed.returncode == 0 and "skipped 1" in resumed.stdout, resumed.stderr[-2000:]
    assert len(pd.read_csv(clips / "k.csv")) == 3


@pytest.mark.slow
def test_cache_and_run_folder_have_one_writer(clips, ckpt_path, audioset_data):
    (clips / "cache").mkdir()
    with locks.exclusive(locks.folder_lock_path(clips / "cache"), what="cache"):
        refused = tagger("embed", "clips", "--out", "cache", *common(ckpt_path), cwd=clips)
    assert refused.returncode == 1 and f"cache cache is in use by pid {os.getpid()} " in refused.stderr, refused.stderr[
        -2000:
    ]
    assert not list((clips / "cache").rglob("*.pkl"))

    config = {
        "data": {
            "index": str(audioset_data / "index_genre10.csv"),
            "cache": str(audioset_data / "cache"),
            "vocabulary": str(audioset_data / "vocab_genre10.json"),
            "task": "singlelabel",
        },
        "head": {"name": "dense", "hidden": 16, "n_layers": 1},
        "epochs": 1,
        "steps_per_epoch": 2,
    }
    (clips / "cfg.json").write_text(json.dumps(config))
    (clips / "run").mkdir()
    with locks.exclusive(locks.folder_lock_path(clips / "run"), what="run"):
        busy = tagger("train", "cfg.json", "--run-dir", "run", "--quiet", cwd=clips)
    assert busy.returncode == 1 and f"run folder run is in use by pid {os.getpid()} " in busy.stderr, busy.stderr[
        -2000:
    ]
    assert not (clips / "run" / "config.json").exists()


@pytest.mark.slow
def test_embed_then_tag_runs_the_network_once(clips, heads, ckpt_path, pca_params):
    env = {"CALLS_FILE": str(clips / "calls")}
    embedded = tagger_here("embed", "clips", "--out", "cache", *common(ckpt_path), cwd=clips, env=env)
    assert embedded.returncode == 0 and calls_of(env) > 0, embedded.stderr[-2000:]
    # a raw head, and the shipped `music` head, which needs postprocessed embeddings (derived from the raw entries)
    for model, extra in ((heads[0], []), ("music", ["--pca", pca_params])):
        name = os.path.basename(str(model))
        cached = tagger_here(
            "tag",
            "clips",
            "--model",
            model,
            "--cache",
            "cache",
            "--out",
            f"{name}.csv",
            *extra,
            *common(ckpt_path),
            cwd=clips,
            env=env,
        )
        assert cached.returncode == 0, cached.stderr[-2000:]
        assert calls_of(env) == 0  # every embedding came from the cache
        assert "stale" not in cached.stderr and "other settings" not in cached.stderr
        direct = tagger_here(
            "tag",
            "clips",
            "--model",
            model,
            "--out",
            f"{name}-direct.csv",
            *extra,
            *common(ckpt_path),
            cwd=clips,
            env=env,
        )
        assert direct.returncode == 0 and calls_of(env) > 0
        a, b = pd.read_csv(clips / f"{name}.csv"), pd.read_csv(clips / f"{name}-direct.csv")
        assert a["tag_1"].tolist() == b["tag_1"].tolist()
        np.testing.assert_allclose(a.filter(like="p_").to_numpy(), b.filter(like="p_").to_numpy(), atol=1e-6)


@pytest.mark.slow
def test_read_only_cache(clips, heads, ckpt_path):
    env = {"CALLS_FILE": str(clips / "calls")}
    # made in this process (what is tested is the read-only cache, below, in unprivileged processes)
    made = run_in_process(["embed", "clips/c0.wav", "clips/c1.wav", "--out", "cache", *common(ckpt_path)], cwd=clips)
    assert made.returncode == 0, made.stderr[-2000:]
    for folder, dirs, names in os.walk(clips / "cache"):
        os.chmod(folder, 0o555)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o444)
    try:
        # every clip it holds is tagged from it; the third is embedded for this run, not stored, and said so
        tagged = tagger(
            "tag",
            "clips",
            "--model",
            heads[0],
            "--cache",
            "cache",
            "--out",
            "t.csv",
            *common(ckpt_path),
            cwd=clips,
            env=env,
            unprivileged=True,
        )
        assert tagged.returncode == 0, tagged.stderr[-2000:]
        assert len(pd.read_csv(clips / "t.csv")) == 3 and calls_of(env) == 1  # the third clip only: one network batch
        assert "cache cache is read-only: 1 clips not in it were embedded for this run but not stored" in tagged.stderr
        # embedding what it holds is a no-op; embedding more is a clear error, not a traceback
        held = tagger(
            "embed", "clips/c0.wav", "clips/c1.wav", "--out", "cache", *common(ckpt_path), cwd=clips, unprivileged=True
        )
        assert held.returncode == 0 and "skipped 2" in held.stdout, held.stderr[-2000:]
        more = tagger("embed", "clips", "--out", "cache", *common(ckpt_path), cwd=clips, unprivileged=True)
        assert more.returncode == 1 and "cache cache is read-only: 1 of 3 tracks" in more.stderr, more.stderr[-2000:]
        assert "Traceback" not in more.stderr + tagged.stderr
    finally:
        for folder, dirs, names in os.walk(clips / "cache"):
            os.chmod(folder, 0o755)


def test_a_run_folder_that_never_trained_takes_the_corrected_config(tmp_path):
    from tagger.training import runs

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    runs._freeze(str(run), "config.json", {"lr": "bad"})
    runs._freeze(str(run), "config.json", {"lr": 0.1})  # nothing trained yet: replaced
    assert json.loads((run / "config.json").read_text()) == {"lr": 0.1}
    (run / "history.csv").write_text("epoch\n0\n")
    with pytest.raises(DataError, match="different config.json and has trained with it"):
        runs._freeze(str(run), "config.json", {"lr": 0.2})


@pytest.mark.parametrize(
    "kind,header,body,cut,n",
    [
        ("csv", b"path,p\r\n", b'"a\nb",1\r\n"c\xe2\x80\xa8d",2\r\n', b'"e\nf",', 2),
        ("csv", b"path,p\r\n", b'"a\nb",1\r\n', b'"e\nf",3\r', 1),
        ("tsv", b"path\terror\r\n", b'"a\tb"\tboom\r\n', b'"x\n', 1),
        ("jsonl", b"", b'{"path": "a\\nb"}\n{"path": "c\\u2028d"}\n', b'{"path": "e', 2),
    ],
)
def test_records_keep_complete_rows_and_cut_a_killed_tail(tmp_path, kind, header, body, cut, n):
    path = tmp_path / f"out.{kind}"
    path.write_bytes(header + body + cut)
    _, rows = records.read_records(str(path), kind)  # a reader (beside a writer, maybe) never writes
    assert path.read_bytes() == header + body + cut and len(rows) == n
    _, rows = records.read_records(str(path), kind, truncate=True)  # the lock holder's, on resume
    assert path.read_bytes() == header + body  # the cut-off record is gone, the rest kept
    assert len(rows) == n and rows[0]["path"] in ("a\nb", "a\tb")


def test_records_refuse_a_damaged_middle(tmp_path):
    path = tmp_path / "out.csv"
    path.write_bytes(b"path,p\r\na,1\r\nb,2,3\r\nc,3\r\n")
    with pytest.raises(DataError, match="record 2 has 3 fields"):
        records.read_records(str(path), "csv")


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_reader_looping_beside_a_running_writer_never_changes_its_file(tmp_path, kind):
    """The README's reader (``read_records``) beside a writer that is halfway through a row: the finished file is
    byte for byte an undisturbed run's, and the reader only ever saw complete rows."""
    import threading

    from tagger.resumable import ResumableOutput

    rows = [{"path": f'clip {i}\n,"x"', "p": f"{i / 7:.4f}"} for i in range(40)]

    def write(out, pause):
        with ResumableOutput(
            out, kind=kind, settings={"s": 1}, compare=lambda old, new: [], fieldnames=["path", "p"]
        ) as w:
            append = w._append

            def in_halves(text):  # each record reaches the disk in two writes, a reader may see the first alone
                append(text[: len(text) // 2])
                pause()
                append(text[len(text) // 2 :])

            w._append = in_halves
            for row in rows:
                w.row(row)

    write(str(tmp_path / "alone" / f"out.{kind}"), lambda: None)
    out = str(tmp_path / "beside" / f"out.{kind}")
    half_written = threading.Event()
    done = threading.Event()
    seen = []

    def pause():
        half_written.set()
        time.sleep(0.002)

    def reader():
        while not done.is_set():
            if os.path.exists(out):
                _, got = records.read_records(out, kind)
                seen.append(len(got))
                assert all(r["path"].startswith("clip ") for r in got)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        write(out, pause)
    finally:
        done.set()
        thread.join()
    assert half_written.is_set() and len(seen) > 10 and seen == sorted(seen)
    assert open(out, "rb").read() == open(tmp_path / "alone" / f"out.{kind}", "rb").read()


def test_a_lock_on_a_full_disk_is_held_without_its_holder_line(tmp_path, monkeypatch):
    """No space left for the lock file's one line: the lock still holds (a second taker is refused), and the run
    goes on to its own clean no-space stop instead of an OSError traceback from the lock."""
    import errno

    real = os.write

    def full(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".lock"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    path = str(tmp_path / "out.csv.lock")
    with monkeypatch.context() as m:
        m.setattr(os, "write", full)
        with locks.exclusive(path, what="output out.csv"):
            assert open(path).read() == ""
            with pytest.raises(DataError, match="output out.csv is in use"):
                with locks.exclusive(path, what="output out.csv"):
                    pass
