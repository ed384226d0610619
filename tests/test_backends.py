"""tagger on every Keras 3 backend: the plain weights file, JAX against TensorFlow, and no TensorFlow at all.

Tests marked ``backends`` hold on whichever backend the process runs (CI runs them a second time under
``KERAS_BACKEND=jax``); the others compare backends through ``tagger`` processes of their own.
"""

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from helpers import (
    GENRES,
    HEAD_LABELS,
    KILLER,
    SEQUENCE,
    make_config,
    run_in_process,
    write_audio,
    write_config,
    write_feature_dataset,
    write_head_bundle,
)

from tagger import backend
from tagger.embedding import audio
from tagger.embedding.embed import resolve_dtype
from tagger.embedding.vggish import frontend
from tagger.embedding.vggish import network as vggish
from tagger.embedding.vggish.extractor import Embedder
from tagger.exceptions import DataError, ParameterError
from tagger.testing import WITHOUT_TENSORFLOW, numpy_forward

jax = pytest.importorskip("jax", reason="the JAX backend is the `jax` extra (CI installs it)")

#: run a `tagger` command in a process where TensorFlow cannot be imported at all
NO_TENSORFLOW_CLI = WITHOUT_TENSORFLOW + textwrap.dedent(
    """
    from tagger import cli
    status = cli.main(sys.argv[1:])
    print("tensorflow imported:", "tensorflow" in sys.modules)
    sys.exit(status)
    """
)


def tagger_process(args, *, backend_name, cwd, code=None, env=None, timeout=600):
    """``tagger ARGS`` in a fresh process on ``backend_name`` (through ``code`` when given)."""
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "tagger", *args]
    return subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, "KERAS_BACKEND": backend_name, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.backends
@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_a_plain_weights_file_holds_the_same_weights_and_id(ckpt_path, fixture_weights, tmp_path, suffix):
    out = tmp_path / f"vggish{suffix}"
    identifier = vggish.export_weights(ckpt_path, out)
    back = vggish.read_weights(str(out))
    assert identifier == vggish.weights_id(back) == vggish.weights_id(vggish.read_weights(ckpt_path))
    assert sorted(back) == sorted(fixture_weights)
    for name, value in fixture_weights.items():
        np.testing.assert_array_equal(back[name], value)
        assert back[name].dtype == np.float32


def test_the_weights_export_command(ckpt_path, tmp_path, capsys):
    from tagger import cli

    assert cli.main(["weights", "export", ckpt_path, str(tmp_path / "v.npz")]) == 0
    identifier = vggish.weights_id(vggish.read_weights(ckpt_path))
    assert f"wrote {tmp_path / 'v.npz'} ({identifier}; the same id as {ckpt_path}" in capsys.readouterr().out
    assert cli.main(["weights", "export", ckpt_path, str(tmp_path / "v.pt")]) == 1
    assert "v.pt: a plain weights file ends in .npz or .safetensors" in capsys.readouterr().err
    assert not (tmp_path / "v.pt").exists()


@pytest.mark.backends
def test_bad_plain_weights_files_are_clear_errors(ckpt_path, fixture_weights, tmp_path):
    with pytest.raises(DataError, match=r"w\.h5: a plain weights file ends in \.npz or \.safetensors"):
        vggish.export_weights(ckpt_path, tmp_path / "w.h5")
    (tmp_path / "broken.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=r"broken\.npz: cannot read a plain weights file"):
        vggish.read_weights(str(tmp_path / "broken.npz"))
    with pytest.raises(DataError, match=r"missing\.npz: no such weights file"):
        vggish.read_weights(str(tmp_path / "missing.npz"))
    short = dict(fixture_weights)
    del short["vggish/fc2/biases"]
    np.savez(tmp_path / "short.npz", **short)
    with pytest.raises(DataError, match=r"short\.npz: not VGGish weights: vggish/fc2/biases missing"):
        vggish.read_weights(str(tmp_path / "short.npz"))


def test_weights_with_nan_or_inf_are_refused_by_tensor_before_any_clip_is_cached(fixture_weights, tmp_path, capsys):
    from safetensors.numpy import save_file

    from tagger import cli

    nan = dict(fixture_weights)
    nan["vggish/conv3/conv3_1/weights"] = nan["vggish/conv3/conv3_1/weights"].copy()
    nan["vggish/conv3/conv3_1/weights"][0, 0, 0, :2] = np.nan
    np.savez(tmp_path / "nan.npz", **nan)
    inf = dict(fixture_weights, **{"vggish/fc2/biases": np.full(128, np.inf, np.float32)})
    save_file({k: np.ascontiguousarray(v) for k, v in inf.items()}, str(tmp_path / "inf.safetensors"))
    with pytest.raises(DataError, match=r"nan\.npz: not VGGish weights: vggish/conv3/conv3_1/weights holds 2 NaN"):
        vggish.read_weights(str(tmp_path / "nan.npz"))
    with pytest.raises(DataError, match=r"vggish/fc2/biases holds 128 NaN or infinite values: the file is damaged"):
        vggish.read_weights(str(tmp_path / "inf.safetensors"))
    clip = write_audio(tmp_path / "a.wav", 2.0)
    code = cli.main(["embed", str(clip), "--out", str(tmp_path / "cache"), "--weights", str(tmp_path / "nan.npz")])
    assert code == cli.EXIT_ERROR
    assert "conv3_1/weights holds 2 NaN" in capsys.readouterr().err
    assert not list((tmp_path / "cache").rglob("*.pkl"))


@pytest.mark.backends
def test_the_backend_runs_vggish_like_the_numpy_reference(plain_weights, fixture_weights, gtzan_files):
    """The network on this process's backend, from the plain file, against the NumPy forward pass."""
    patches, _ = frontend.waveform_to_patches(audio.load(gtzan_files[0]))
    embedder = Embedder(str(plain_weights), batch_size=16)
    got = embedder.run(patches[:20])
    expected = numpy_forward(fixture_weights, patches[:20])
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-5
    assert embedder.network_id == vggish.weights_id(fixture_weights)  # float32: the id of the weights alone


@pytest.mark.parametrize(
    "gpus,capability,resolved",
    [
        ([], None, "float32"),
        (["gpu:0"], (7, 5), "float16"),
        (["gpu:0"], (9, 0), "bfloat16"),
        (["gpu:0"], None, "float16"),
    ],
)
def test_auto_precision_follows_the_device(monkeypatch, gpus, capability, resolved):
    """bfloat16 on GPUs with bfloat16 tensor cores (8.0 and up), float16 on older ones, float32 on a plain CPU."""
    monkeypatch.setattr(backend, "gpus", lambda: list(gpus))
    monkeypatch.setattr(backend, "gpu_capability", lambda: capability)
    monkeypatch.setattr(backend, "cpu_flags", lambda cpuinfo=None: frozenset())  # a CPU without bfloat16 (the
    # recorded CPUs with it: tests/test_precision.py)
    assert resolve_dtype("auto") == resolved
    assert resolve_dtype("float32") == "float32" and resolve_dtype("bfloat16") == "bfloat16"


@pytest.mark.integration
def test_an_unknown_backend_is_a_clear_error(tmp_path):
    done = tagger_process(["embed", "x.wav", "--out", "c"], backend_name="cntk", cwd=tmp_path, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "KERAS_BACKEND='cntk': tagger runs on one of tensorflow, jax, torch" in done.stderr


@pytest.mark.integration
def test_without_tensorflow_jax_embeds_and_tags(plain_weights, tmp_path):
    """TensorFlow made unimportable: `tagger embed --weights vggish.npz` and `tagger tag` work on JAX."""
    for i in range(3):
        write_audio(tmp_path / "clips" / f"c{i}.wav", 3.0 + i, freq=300.0 + 100 * i, seed=i)
    head = write_head_bundle(tmp_path / "head", seed=0)
    common = ["--weights", str(plain_weights), "--workers", "0", "--no-progress"]
    embedded = tagger_process(
        ["embed", "clips", "--out", "cache", *common], backend_name="jax", cwd=tmp_path, code=NO_TENSORFLOW_CLI
    )
    assert embedded.returncode == 0, embedded.stderr[-3000:]
    assert "embedded 3, skipped 0" in embedded.stdout and "tensorflow imported: False" in embedded.stdout
    tagged = tagger_process(
        ["tag", "clips", "--model", str(head), "--out", "tags.jsonl", "--cache", "cache", *common],
        backend_name="jax",
        cwd=tmp_path,
        code=NO_TENSORFLOW_CLI,
    )
    assert tagged.returncode == 0, tagged.stderr[-3000:]
    assert "tensorflow imported: False" in tagged.stdout
    rows = [json.loads(line) for line in (tmp_path / "tags.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(sorted(r["probabilities"]) == sorted(HEAD_LABELS) for r in rows)


@pytest.mark.slow
def test_jax_embeds_and_tags_the_gtzan_tracks_as_tensorflow_does(plain_weights, pca_params, shared, tmp_path):
    """The ten shared GTZAN tracks on both backends: embeddings and a raw-embedding head's probabilities within
    1e-5 (each backend's `tagger tag` reads the cache its `tagger embed` wrote). A head on postprocessed embeddings (the shipped genre10) sees 8-bit values: a value within 1e-5 of a
    rounding boundary can land one step (1/255 of the range) apart, so there the bound is that one step's."""
    from tagger.embedding.vggish.postprocess import Postprocessor

    genres = str(shared / "data/gtzan/genres")
    head = write_head_bundle(tmp_path / "head", seed=0)
    embeddings, probabilities = {}, {}

    models = {"head": (str(head), []), "genre10": ("genre10", ["--pca", str(pca_params), "--allow-other-embedding"])}

    def tags_file(name, model):
        return tmp_path / f"tags-{name}-{model}.jsonl"

    def commands(name):
        common = ["--weights", str(plain_weights), "--precision", "float32", "--no-progress"]
        yield ["embed", genres, "--out", f"cache-{name}", *common]
        for model, (spec, extra) in models.items():
            # from the cache this backend's `tagger embed` filled: one network pass per backend, not three
            out = str(tags_file(name, model))
            yield ["tag", genres, "--model", spec, "--out", out, "--cache", f"cache-{name}", *extra, *common]

    for name in ("tensorflow", "jax"):
        # this process's own backend runs in this process, the other's three commands in one process of its own
        # (the subject is the backends, not a process boundary)
        if name == backend.name():
            for args in commands(name):
                done = run_in_process(args, cwd=tmp_path)
                assert done.returncode == 0, done.stderr[-3000:]
        else:
            done = tagger_process([json.dumps(list(commands(name)))], backend_name=name, cwd=tmp_path, code=SEQUENCE)
            assert done.returncode == 0, done.stderr[-3000:]
        entries = sorted((tmp_path / f"cache-{name}").rglob("*.pkl"))
        assert len(entries) == 10
        embeddings[name] = {p.name: pickle.loads(p.read_bytes())["embedding"] for p in entries}
        for model in models:
            rows = [json.loads(line) for line in tags_file(name, model).read_text().splitlines()]
            probabilities[name, model] = {r["path"]: r["probabilities"] for r in rows}
    assert embeddings["tensorflow"].keys() == embeddings["jax"].keys()
    quantise = Postprocessor(str(pca_params))
    for track, reference in embeddings["tensorflow"].items():
        rel = np.abs(embeddings["jax"][track] - reference).max() / np.abs(reference).max()
        assert rel < 1e-5, (track, rel)
        steps = np.abs(quantise(embeddings["jax"][track]).astype(int) - quantise(reference).astype(int))
        assert steps.max() <= 1 and steps.mean() < 1e-3, (track, steps.max(), steps.mean())
    for model, bound in (("head", 1e-5), ("genre10", 1e-3)):
        a, b = probabilities["tensorflow", model], probabilities["jax", model]
        assert a.keys() == b.keys() and len(a) == 10
        worst = max(abs(b[path][tag] - p) for path, row in a.items() for tag, p in row.items())
        assert worst < bound, (model, worst)


@pytest.mark.backends
@pytest.mark.slow
@pytest.mark.parametrize("head", ["mlp", "feature_attention", "multilevel_attention"])
def test_a_head_trains_is_killed_resumes_and_ends_where_an_uninterrupted_run_ends(tmp_path, head):
    """On this process's backend: dropout, mixup and a learning-rate schedule, killed after epoch 2 of 4; the run
    then tags a clip in a fresh interpreter."""
    data = write_feature_dataset(tmp_path / "data")
    shape = {"n_layers": 2, "levels": 2} if head == "multilevel_attention" else {"n_layers": 1}
    settings = {
        "head": {"name": head, "hidden": 16, "dropout": 0.2, **shape, "standardize": True},
        "window": 1,
        "batch_size": 16,
        "epochs": 4,
        "steps_per_epoch": 4,
        "mux": {"n_active": 32, "rate": 2.0},
        "mixup": 0.4,
        "early_stopping": {"patience": 10},
        "seed": 5,
    }
    config = write_config(tmp_path / "c.json", make_config(data, data={"task": "singlelabel"}, **settings))
    name = backend.name()

    def run(folder, kill_after):
        args = ["train", str(config), "--run-dir", str(folder), "--quiet"]
        return tagger_process(args, backend_name=name, cwd=tmp_path, code=KILLER, env={"KILL_AFTER_EPOCH": kill_after})

    # the uninterrupted run in this process (on its backend); the killed one and its resumption in processes
    whole = run_in_process(["train", config, "--run-dir", tmp_path / "whole", "--quiet"], cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = run(tmp_path / "resumed", "2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "resumed/metrics.json").exists()
    resumed = run(tmp_path / "resumed", "99")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((tmp_path / "whole/metrics.json").read_text()) == json.loads(
        (tmp_path / "resumed/metrics.json").read_text()
    )
    a, b = (pd.read_csv(tmp_path / folder / "history.csv") for folder in ("whole", "resumed"))
    assert len(a) == len(b) == 4
    np.testing.assert_allclose(a[["loss", "val_score", "lr"]], b[["loss", "val_score", "lr"]], rtol=1e-6)
    assert list((tmp_path / "whole/tensorboard").glob("events.out.tfevents.*"))  # scalars on every backend
    clip = write_audio(tmp_path / "clip.wav", 3.0)
    tagged = tagger_process(
        ["tag", str(clip), "--model", str(tmp_path / "resumed"), "--out", "t.jsonl", "--workers", "0"],
        backend_name=name,
        cwd=tmp_path,
    )
    assert tagged.returncode == 0, tagged.stderr[-3000:]
    row = json.loads((tmp_path / "t.jsonl").read_text())
    assert sorted(row["probabilities"]) == sorted(GENRES) and abs(sum(row["probabilities"].values()) - 1) < 1e-4


def test_the_backend_name_is_checked_before_keras_loads(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "theano")
    with pytest.raises(ParameterError, match="KERAS_BACKEND='theano'"):
        backend.name()


def test_a_backend_that_is_not_installed_is_named_with_what_to_install(monkeypatch):
    real = backend.importlib.util.find_spec
    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda n: None if n == "torch" else real(n))
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    with pytest.raises(ParameterError, match=r"KERAS_BACKEND=torch: torch is not installed here; pip install torch"):
        backend.check_choice()
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    backend.check_choice()  # installed here (the test extra): no word
