"""One provenance contract: every entry and output knows what made it; one cache policy; one resumable-output engine.

Each test is one of the hostile cases that used to give a silently wrong or incomplete result with exit 0,
run through the CLI (in this process: ``cli.main``), and checks that it is gone.
"""

import ast
import errno
import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest
from helpers import HEAD_LABELS, ROOT, write_audio, write_head_bundle

from tagger import cli, records, resumable
from tagger.embedding import cache, provenance
from tagger.embedding.vggish import params
from tagger.exceptions import DataError


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    """A raw-embedding head, a postprocessed one and a single-label one, in the bundle layout."""
    base = tmp_path_factory.mktemp("heads")
    raw = write_head_bundle(base / "raw", seed=0)
    post = write_head_bundle(base / "post", seed=1)
    meta = json.loads((post / "bundle.json").read_text())
    (post / "bundle.json").write_text(json.dumps({**meta, "embedding": "postprocessed"}))
    single = write_head_bundle(base / "single", seed=2)
    meta = json.loads((single / "bundle.json").read_text())
    (single / "bundle.json").write_text(json.dumps({**meta, "task": "singlelabel"}))
    return {"raw": raw, "post": post, "single": single}


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A working folder holding music/ with three short clips; the test runs in it."""
    for i in range(3):
        write_audio(tmp_path / "music" / f"c{i}.wav", 1.5 + i, freq=300.0 * (i + 1), seed=i)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args, ckpt_path):
    return cli.main([*map(str, args), "--weights", ckpt_path, "--workers", "0", "--no-progress"])


def test_one_clip_however_its_path_is_spelled(work, heads, ckpt_path, capsys):
    for spelled in ("music", "./music/", str(work / "music")):
        assert run("tag", spelled, "--model", heads["raw"], "--out", "t.csv", ckpt_path=ckpt_path) == 0
    out = capsys.readouterr().out
    assert out.count("tagged 0, skipped 3") == 2, out
    df = pd.read_csv(work / "t.csv")
    assert len(df) == 3 and df["path"].tolist() == [f"music/c{i}.wav" for i in range(3)]


def test_a_rerun_with_other_pca_parameters_is_refused_naming_them(work, heads, ckpt_path, pca_params, capsys):
    other = work / "other_pca.npz"
    with np.load(pca_params) as npz:
        np.savez(other, pca_means=npz["pca_means"] + 0.1, pca_eigen_vectors=npz["pca_eigen_vectors"])
    args = ("tag", "music", "--model", heads["post"], "--out", "t.csv")
    assert run(*args, "--pca", pca_params, ckpt_path=ckpt_path) == 0
    before = (work / "t.csv").read_bytes()
    meta = json.loads((work / "t.csv.meta.json").read_text())["settings"]
    assert meta["pca"].startswith("pca-sha1:") and meta["kind"] == "postprocessed" and meta["precision"] == "float32"
    capsys.readouterr()
    assert run(*args, "--pca", other, ckpt_path=ckpt_path) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "pca: pca-sha1:" in err and "--overwrite" in err, err
    assert (work / "t.csv").read_bytes() == before


def _corrupt(cache_dir, track_id, embedding):
    """Replace an entry's embedding by ``embedding``, keeping everything else (a damaged or foreign entry)."""
    path = cache.entry_path(cache_dir, track_id)
    with open(path, "rb") as f:
        entry = pickle.load(f)
    entry["embedding"], entry["timestamps"] = embedding, np.arange(len(embedding)) * 0.96
    with open(path, "wb") as f:
        pickle.dump(entry, f)


@pytest.mark.parametrize("read_only", [False, True], ids=["writable", "read-only"])
def test_nan_and_misshapen_entries_are_never_served(work, heads, ckpt_path, read_only, caplog, monkeypatch):
    assert run("embed", "music", "--out", "cache", ckpt_path=ckpt_path) == 0
    nan = np.full((2, 128), np.nan, np.float32)
    _corrupt("cache", "music/c0.wav", nan)
    _corrupt("cache", "music/c1.wav", np.zeros((31, 64), np.float32))
    assert run("tag", "music", "--model", heads["raw"], "--out", "direct.csv", ckpt_path=ckpt_path) == 0
    with monkeypatch.context() as patched:
        if read_only:  # a cache this process cannot write (root writes anywhere, so it is told so)
            patched.setattr(cache, "writable", lambda folder: False)
        status = run("tag", "music", "--model", heads["raw"], "--cache", "cache", "--out", "t.csv", ckpt_path=ckpt_path)
    assert status == 0
    a, b = pd.read_csv(work / "t.csv"), pd.read_csv(work / "direct.csv")
    assert len(a) == 3 and a["tag_1"].tolist() == b["tag_1"].tolist()
    np.testing.assert_allclose(a.filter(like="p_").to_numpy(), b.filter(like="p_").to_numpy(), atol=1e-5)
    assert "c0.wav.pkl: invalid cache entry: its embedding holds 256 NaN or infinite values" in caplog.text
    assert "c1.wav.pkl: invalid cache entry: its embedding has shape (31, 64)" in caplog.text
    if read_only:  # named per file, computed for the run, never served and left as they were
        assert caplog.text.count("re-embedded for this run (read-only cache)") == 2
        with pytest.raises(cache.StaleEntry, match="invalid"):
            cache.read_entry("cache", "music/c0.wav")
    else:
        for i in (0, 1):
            assert cache.read_entry("cache", f"music/c{i}.wav")["embedding"].shape[1] == 128


def test_a_latin1_file_name_is_listed_in_the_errors_file_and_the_run_completes(work, heads, ckpt_path):
    folder = os.fsencode(work / "music")
    bad = os.path.join(folder, b"caf\xe9.au")  # Latin-1, not valid UTF-8
    with open(bad, "wb") as f:
        f.write(b"")  # empty: an error, as any bad file
    good = os.path.join(folder, b"d\xe9j\xe0.wav")
    write_audio(work / "tmp.wav", 1.2)
    os.rename(work / "tmp.wav", good)
    assert run("tag", "music", "--model", heads["raw"], "--out", "t.csv", ckpt_path=ckpt_path) == cli.EXIT_SOME_FAILED
    failures = records.read_errors(str(work / "t.csv.errors.tsv"))
    assert [os.fsencode(p) for p, _ in failures] == [os.path.relpath(bad, os.fsencode(work))]
    df = pd.read_csv(work / "t.csv", encoding_errors="surrogateescape", dtype={"path": object})  # the documented reader
    assert len(df) == 4 and os.path.relpath(good, os.fsencode(work)) in [os.fsencode(p) for p in df["path"]]
    # a rerun skips both, whatever their bytes
    assert run("tag", "music", "--model", heads["raw"], "--out", "t.csv", ckpt_path=ckpt_path) == cli.EXIT_SOME_FAILED
    assert len(pd.read_csv(work / "t.csv", encoding_errors="surrogateescape", dtype={"path": object})) == 4
    assert len(records.read_errors(str(work / "t.csv.errors.tsv"))) == 1


class _FullDisk:
    """A file whose writes fail with ENOSPC after ``allowed`` of them (the disk filled up mid-run)."""

    def __init__(self, f, allowed):
        self.f, self.allowed = f, allowed

    def write(self, text):
        if self.allowed <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.allowed -= 1
        return self.f.write(text)

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_full_disk_stops_with_a_message_and_a_rerun_gives_the_uninterrupted_result(
    work, heads, ckpt_path, capsys, monkeypatch
):
    args = ("tag", "music", "--model", heads["raw"], "--top-n", 2)
    assert run(*args, "--out", "whole.csv", ckpt_path=ckpt_path) == 0
    real_open = open

    def open_filling(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return _FullDisk(f, 2) if str(path).endswith("t.csv") and "a" in mode else f

    capsys.readouterr()
    with monkeypatch.context() as patched:
        patched.setattr(resumable, "open", open_filling, raising=False)
        assert run(*args, "--out", "t.csv", ckpt_path=ckpt_path) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "t.csv: could not be written: No space left on device" in err and "a rerun" in err, err
    assert "Traceback" not in err
    assert run(*args, "--out", "t.csv", ckpt_path=ckpt_path) == 0
    assert (work / "t.csv").read_bytes() == (work / "whole.csv").read_bytes()


def test_a_full_disk_while_caching_names_the_entry(work, ckpt_path, capsys, monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(records.os, "fsync", fsync)
        assert run("embed", "music", "--out", "cache", ckpt_path=ckpt_path) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "c0.wav.pkl: could not be written: No space left on device; finished work is kept" in err, err
    assert run("embed", "music", "--out", "cache", ckpt_path=ckpt_path) == 0
    assert len(list((work / "cache").rglob("*.pkl"))) == 3


def _dataset(folder, makers):
    """A tiny dataset whose entries are made by ``makers[i % len(makers)]`` (keyword sets of make_entry)."""
    rows = []
    for i in range(12):
        extra = makers[i % len(makers)]
        x = np.random.default_rng(i).standard_normal((3, 128)).astype(np.float32)
        cache.write_entry(
            folder / "cache",
            f"t{i:02d}",
            cache.make_entry(
                x,
                np.arange(3) * 0.96,
                kind="raw",
                source=f"t{i}",
                duration=3.0,
                **{"frontend": params.frontend_params(), "weights": "vggish-sha1:aaaa", **extra},
            ),
        )
        rows.append({"track_id": f"t{i:02d}", "path": "", "split": "train" if i % 3 else "valid"})
        rows[-1].update(labels=["a", "b"][i % 2], duration=3.0)
    pd.DataFrame(rows).to_csv(folder / "index.csv", index=False)
    (folder / "vocab.json").write_text(json.dumps(["a", "b"]))
    cfg = {
        "data": {"index": "index.csv", "cache": "cache", "vocabulary": "vocab.json", "task": "singlelabel"},
        "head": {"name": "dense", "hidden": 8, "n_layers": 1},
        "window": 3,
        "batch_size": 4,
        "epochs": 1,
        "steps_per_epoch": 2,
        "mux": {"n_active": 4, "rate": 2.0},
    }
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder / "cfg.json"


@pytest.mark.parametrize(
    "other,named",
    [
        ({"weights": "vggish-sha1:bbbb"}, "weights: vggish-sha1:bbbb (t01), vggish-sha1:aaaa (t02)"),
        ({"weights": "vggish-sha1:aaaa+bfloat16"}, "precision: bfloat16 (t01), float32 (t02)"),
        ({"frontend": params.frontend_params(hop_seconds=0.48)}, "frontend:"),
    ],
    ids=["weights", "precision", "frontend"],
)
def test_training_on_entries_of_two_provenances_is_refused(tmp_path, monkeypatch, capsys, other, named):
    monkeypatch.chdir(tmp_path)
    config = _dataset(tmp_path, [{}, other])
    assert cli.main(["train", str(config), "--run-dir", "run", "--quiet"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "mixes embeddings of 2 provenances: 4 entries like" in err and named in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_old_format_entry_and_an_old_meta_are_upgraded_not_redone(work, heads, ckpt_path, capsys):
    assert run("embed", "music", "--out", "cache", ckpt_path=ckpt_path) == 0
    for path in (work / "cache").rglob("*.pkl"):  # the entries as tagger 0.2 wrote them: format 2, no provenance
        entry = pickle.loads(path.read_bytes())
        del entry["provenance"]
        path.write_bytes(pickle.dumps({**entry, "format": 2}))
    capsys.readouterr()
    assert run("embed", "music", "--out", "cache", ckpt_path=ckpt_path) == 0
    assert "embedded 0, skipped 3" in capsys.readouterr().out
    assert run("tag", "music", "--model", heads["raw"], "--out", "t.csv", ckpt_path=ckpt_path) == 0
    meta = json.loads((work / "t.csv.meta.json").read_text())
    settings = meta["settings"]
    old = {k: v for k, v in settings.items() if k not in ("precision", "pca", "kind")}  # the older fields
    (work / "t.csv.meta.json").write_text(json.dumps({**meta, "settings": {**old, "weights": settings["weights"]}}))
    capsys.readouterr()
    assert run("tag", "music", "--model", heads["raw"], "--out", "t.csv", ckpt_path=ckpt_path) == 0
    assert "tagged 0, skipped 3" in capsys.readouterr().out


def test_symlinked_folders_are_followed_once_and_a_loop_is_cut(tmp_path, monkeypatch, ckpt_path, caplog):
    write_audio(tmp_path / "elsewhere" / "x.wav", 1.0)
    (tmp_path / "music").mkdir()
    write_audio(tmp_path / "music" / "a.wav", 1.0)
    os.symlink(tmp_path / "elsewhere", tmp_path / "music" / "linked")
    os.symlink(tmp_path / "music", tmp_path / "music" / "loop")
    monkeypatch.chdir(tmp_path)
    assert run("embed", "music", "--out", "cache", ckpt_path=ckpt_path) == 0
    made = sorted(p.relative_to(tmp_path / "cache").as_posix() for p in (tmp_path / "cache").rglob("*.pkl"))
    assert made == ["music/a.wav.pkl", "music/linked/x.wav.pkl"]
    assert "music/loop: a link to a folder already searched" in caplog.text


def test_a_missing_list_entry_is_reported_and_a_bom_is_ignored(work, heads, ckpt_path):
    (work / "list.m3u").write_bytes("\ufeffmusic/c0.wav\n#EXTINF comment\nmusic/gone.wav\nmusic/c2.wav\n".encode())
    assert run("tag", "list.m3u", "--model", heads["raw"], "--out", "t.csv", ckpt_path=ckpt_path) == 3
    assert pd.read_csv(work / "t.csv")["path"].tolist() == ["music/c0.wav", "music/c2.wav"]
    failures = records.read_errors(str(work / "t.csv.errors.tsv"))
    assert [os.path.basename(p) for p, _ in failures] == ["gone.wav"]


def test_two_inputs_that_map_to_one_track_id_are_refused(tmp_path, monkeypatch, capsys, ckpt_path, heads):
    outside = write_audio(tmp_path / "outside" / "x.wav", 1.0)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    twin = write_audio(tmp_path / "work" / ("_abs" + str(outside)), 1.0)
    assert run("tag", twin, outside, "--model", heads["raw"], "--out", "t.csv", ckpt_path=ckpt_path) == 1
    err = capsys.readouterr().err
    assert "two inputs map to one track id" in err and str(outside) in err and str(twin) in err


def test_options_that_cannot_apply_are_refused_or_capped(work, heads, ckpt_path, capsys, caplog):
    args = ("tag", "music", "--out", "t.csv")
    assert run(*args, "--model", heads["single"], "--threshold", 0.3, ckpt_path=ckpt_path) == cli.EXIT_ERROR
    assert "--threshold 0.3 does not apply" in capsys.readouterr().err
    assert run(*args, "--model", heads["raw"], "--top-n", 9, ckpt_path=ckpt_path) == 0
    assert f"--top-n 9 is more than the model's {len(HEAD_LABELS)} tags: capped" in caplog.text
    assert list(pd.read_csv(work / "t.csv").columns)[-3:] == ["tag_5", "p_5", "tags"]


def test_a_mapping_without_its_header_and_a_latin1_truth_file_are_refused(work, heads, ckpt_path, capsys):
    assert run("tag", "music", "--model", heads["raw"], "--out", "t.jsonl", ckpt_path=ckpt_path) == 0
    (work / "truth.csv").write_text("path,labels\nmusic/c0.wav,Rock\nmusic/c1.wav,Jazz\n")
    (work / "map.csv").write_text("Rock,rock\nJazz,jazz\n")
    assert cli.main(["evaluate", "--truth", "truth.csv", "--predictions", "t.jsonl", "--map", "map.csv"]) == 1
    assert "begins with the header line truth,model" in capsys.readouterr().err
    (work / "latin1.csv").write_bytes("path,labels\nmusic/c0.wav,Caf\xe9\n".encode("latin-1"))
    assert cli.main(["evaluate", "--truth", "latin1.csv", "--predictions", "t.jsonl"]) == 1
    err = capsys.readouterr().err
    assert "latin1.csv: this truth file is not UTF-8 text" in err and "Traceback" not in err


def test_tagging_with_a_head_trained_on_other_pca_parameters_is_refused(work, pca_params, ckpt_path, capsys):
    other = work / "other_pca.npz"
    with np.load(pca_params) as npz:
        np.savez(other, pca_means=npz["pca_means"], pca_eigen_vectors=npz["pca_eigen_vectors"][::-1])
    args = ("tag", "music", "--model", "music", "--out", "t.csv")
    assert run(*args, "--pca", other, ckpt_path=ckpt_path) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert f"pca: {provenance.OFFICIAL_PCA_ID} (trained on)" in err and "--allow-other-embedding" in err, err
    assert run(*args, "--pca", other, "--allow-other-embedding", ckpt_path=ckpt_path) == 0
    assert run(*args, "--pca", pca_params, "--overwrite", ckpt_path=ckpt_path) == 0  # the official parameters


def test_the_shipped_pca_id_is_the_official_files():
    from tagger.embedding.vggish.postprocess import Postprocessor

    shared = ROOT.parent / "shared" / "vggish" / "vggish_pca_params.npz"
    if not shared.exists():
        pytest.skip("../shared is absent")
    assert Postprocessor(shared).id == provenance.OFFICIAL_PCA_ID


# the policy's own readers and judges; no module but tagger/embedding/cache.py may call them
JUDGES = {"read_entry", "loads_entry", "check_entry", "safe_loads", "serves", "serving", "validate_entry", "upgrade"}


def test_only_the_cache_policy_reads_or_judges_entries():
    calls = []
    for path in sorted([*(ROOT / "tagger").rglob("*.py"), *(ROOT / "preprocess").rglob("*.py")]):
        if path == ROOT / "tagger/embedding/cache.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", None))
                if name in JUDGES:
                    calls.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert not calls, calls


def test_the_policy_names_a_verdict_and_an_action_for_every_case(tmp_path):
    frontend = params.frontend_params()
    want = provenance.record(weights="vggish-sha1:aaaa", precision="float32", frontend=frontend, kind="raw")
    view = cache.CacheView(tmp_path, want)

    def put(track_id, **extra):
        kw = {"kind": "raw", "frontend": frontend, "weights": "vggish-sha1:aaaa", "source": "s", "fingerprint": "1:a"}
        cache.write_entry(tmp_path, track_id, cache.make_entry(np.zeros((2, 128)), [0.0, 0.96], **{**kw, **extra}))

    put("hit")
    put("other", weights="vggish-sha1:bbbb")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    verdicts = {t: view.judge(t, "1:a") for t in ("hit", "other", "junk", "absent")}
    assert {t: (v.status, v.action) for t, v in verdicts.items()} == {
        "hit": ("hit", "use"),
        "other": ("other settings", "keep"),
        "junk": ("unreadable", "replace"),
        "absent": ("missing", "embed"),
    }
    assert view.judge("hit", "2:b").status == "source changed"
    assert cache.CacheView(tmp_path, want, overwrite=True).judge("other").action == "replace"
    with pytest.raises(DataError, match="changed during the run"):
        view.read("other")


def test_prepare_says_what_it_did(tmp_path, monkeypatch, capsys, shared, mtt_clip):
    monkeypatch.chdir(tmp_path)
    genres = shared / "data/gtzan/genres"
    assert cli.main(["prepare", "gtzan", str(genres), "--out", "g", "--no-embed", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "clips indexed; embedded 0, reused 0 from the cache, failed 0;" in out.out
    assert "clips of the split lists without audio: " in out.err  # GTZAN indexes the tracks it has
    assert "no folds (data.cv_folds needs them): the rarest genre has 1 tracks" in out.err
    n_listed = out.out.split("failed 0; ")[1].split(" without audio")[0]
    assert int(n_listed) > 400  # the other tracks of the filtered split (only ten are here)
    tags = ["guitar", "techno"]
    rows = [
        {"clip_id": "1", "guitar": 0, "techno": 1, "mp3_path": "e/" + mtt_clip.name},
        {"clip_id": "2", "guitar": 1, "techno": 0, "mp3_path": "f/absent-1.mp3"},
        {"clip_id": "3", "guitar": 1, "techno": 1, "mp3_path": "c/absent-2.mp3"},
    ]
    pd.DataFrame(rows)[["clip_id", *tags, "mp3_path"]].to_csv("ann.csv", sep="\t", index=False, quoting=1)
    audio = shared / "data/mtt/audio"
    status = cli.main(["prepare", "mtt", str(audio), "--annotations", "ann.csv", "--out", "m", "--no-embed"])
    out = capsys.readouterr()
    assert (
        status == 0 and "(3 clips indexed; embedded 0, reused 0 from the cache, failed 0; 2 without audio)" in out.out
    )
    assert "2 clips without audio (indexed, not embedded)" in out.err and "absent-1.mp3" in out.err


def _labelled_folder(tmp_path, n, groups):
    rows = []
    for i in range(n):
        write_audio(tmp_path / "mine" / f"c{i}.wav", 1.0, freq=200.0 + 50 * i, seed=i)
        rows.append({"path": f"c{i}.wav", "labels": "ab"[i % 2], "artist": groups[i]})
    pd.DataFrame(rows).to_csv(tmp_path / "mine" / "labels.csv", index=False)


def test_prepare_folder_refuses_empty_groups_and_says_when_folds_are_fewer(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _labelled_folder(tmp_path, 6, ["x", "", "y", "y", "", "z"])
    args = ["prepare", "folder", "mine", "--labels", "mine/labels.csv", "--out", "d", "--no-embed"]
    assert cli.main([*args, "--group", "artist"]) == cli.EXIT_ERROR
    assert "2 clips have an empty 'artist' cell (first: line 3, c1.wav)" in capsys.readouterr().err
    assert cli.main(args) == 0  # six clips, three per label: fewer than the five folds asked for
    assert "3 folds instead of the 5 asked: the rarest label has 3 clips" in capsys.readouterr().err


def test_a_latin1_name_survives_a_parquet_feature_table(work):
    good = os.path.join(os.fsencode(work / "music"), b"d\xe9j\xe0.wav")
    write_audio(work / "tmp.wav", 1.2)
    os.rename(work / "tmp.wav", good)
    assert cli.main(["features", "music", "--out", "f.parquet", "--workers", "0", "--no-progress"]) == 0
    df = pd.read_parquet(work / "f.parquet")
    assert len(df) == 4 and os.path.relpath(good, os.fsencode(work)) in list(df["path_bytes"])
    assert cli.main(["features", "music", "--out", "f.parquet", "--workers", "0", "--no-progress"]) == 0  # done
