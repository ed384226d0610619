"""musicnn beside VGGish: its frontend's patch policy, its weights' sources and forms, parity with musicnn's own
outputs on the eleven shared clips (tests/musicnn_reference.npz, made by benchmarks/musicnn_reference.py), its
shipped taggers' top tags, and the whole loop on its embeddings.

The real weights come from musicnn's wheel, installed apart from tagger's packages (``pip install --no-deps
--target DIR musicnn``; .ci/run does it and sets ``TAGGER_MUSICNN_WEIGHTS``); the tests that need them skip
without them, except under CI, where their absence fails.
"""

import json
import os
import pathlib
import sys

import numpy as np
import pandas as pd
import pytest

from tagger.embedding import registry
from tagger.embedding.musicnn import frontend, network, params
from tagger.exceptions import DataError, ParameterError

ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests/musicnn_reference.npz"
NETWORKS = tuple(params.NETWORKS)


@pytest.fixture(scope="session")
def musicnn_weights():
    """The folder holding musicnn's four checkpoint folders (``$TAGGER_MUSICNN_WEIGHTS`` or the installed package)."""
    folder = os.environ.get(params.WEIGHTS_ENV) or network.installed_folder()
    if folder and all(os.path.isdir(os.path.join(folder, f)) for f, _, _ in params.NETWORKS.values()):
        return folder
    message = (
        f"musicnn's weights are absent: pip install --no-deps --target DIR musicnn, then {params.WEIGHTS_ENV}="
        "DIR/musicnn"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


def _random_weights(name, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for var, shape in network.variable_shapes(name).items():
        value = rng.normal(0, 0.05, shape).astype(np.float32)
        out[var] = np.abs(value) + 0.5 if var.endswith("moving_variance") else value
    return out


def test_patches_are_187_frames_hop_187_the_tail_dropped_and_a_short_clip_repeated():
    frames = np.arange(400 * params.N_MELS, dtype=np.float32).reshape(400, params.N_MELS)
    patches, times = frontend.patches_of(frames)
    assert patches.shape == (2, 187, 96) and np.array_equal(patches[1], frames[187:374])  # 26 frames dropped
    np.testing.assert_allclose(times, [0.0, 187 * 256 / 16000])
    short = frames[:50]
    padded, t = frontend.patches_of(short)
    assert padded.shape == (1, 187, 96) and list(t) == [0.0]
    assert np.array_equal(padded[0, :50], short) and np.array_equal(padded[0, 150:187], short[:37])
    assert frontend.patches_of(short, short_policy="skip")[0].shape == (0, 187, 96)
    with pytest.raises(ParameterError, match="short_policy='cut'"):
        frontend.patches_of(frames, short_policy="cut")


def test_the_log_is_taken_in_float32_on_the_mel_rounded_to_float16():
    """A loud clip: under NumPy 2 musicnn's own line overflows float16 to inf; tagger's values stay finite, and
    undoing the log gives back float16 values exactly."""
    t = np.arange(16000 * 4) / 16000
    y = (0.99 * np.sign(np.sin(2 * np.pi * 440 * t))).astype(np.float32)  # a full-scale square wave
    logmel = frontend.log_mel(y)
    assert logmel.dtype == np.float32 and logmel.shape == (1 + len(y) // 256, 96) and np.isfinite(logmel).all()
    mel = (np.power(10.0, logmel.astype(np.float64)) - 1) / 1e4
    assert mel.max() > 6.55  # 10000 x mel > 65504, float16's largest: NumPy 2's float16 arithmetic gives inf
    np.testing.assert_allclose(mel, mel.astype(np.float16).astype(np.float64), rtol=2e-6, atol=1e-9)


@pytest.mark.parametrize("name", NETWORKS)
def test_networks_take_187_by_96_patches_and_give_the_representations_of_their_kinds(name):
    net = network.network(_random_weights(name), name)
    out = net.predict(np.zeros((2, 187, 96), np.float32), verbose=0)
    kinds = {k.name.split(":")[1]: k.row_shape for k in registry.model(name).kinds}
    assert {k: v.shape[1:] for k, v in out.items() if k != "taggram"} == kinds
    assert out["taggram"].shape == (2, 50) and ((out["taggram"] > 0) & (out["taggram"] < 1)).all()


def test_plain_weights_keep_their_id_and_damaged_or_foreign_weights_are_named(tmp_path):
    weights = _random_weights("vgg-mtt")
    np.savez(tmp_path / "vgg.npz", **weights)
    wid = network.weights_id(weights, "vgg-mtt")
    assert wid.startswith("vgg-mtt-sha1:")
    assert network.export_weights(tmp_path / "vgg.npz", tmp_path / "vgg.safetensors", "vgg-mtt") == wid
    again = network.read_weights(str(tmp_path / "vgg.safetensors"), "vgg-mtt")
    assert network.weights_id(again, "vgg-mtt") == wid
    with pytest.raises(DataError, match=r"not musicnn-mtt weights \(MTT_musicnn\): conv2d/kernel missing"):
        network.read_weights(str(tmp_path / "vgg.npz"), "musicnn-mtt")  # another network's file
    weights["5CNN/kernel"][0, 0, 0, :3] = np.nan
    np.savez(tmp_path / "nan.npz", **weights)
    with pytest.raises(DataError, match="5CNN/kernel holds 3 NaN or infinite values"):
        network.read_weights(str(tmp_path / "nan.npz"), "vgg-mtt")


def test_without_weights_the_error_names_the_package_the_variable_and_the_option(monkeypatch, tmp_path):
    monkeypatch.setattr(network, "installed_folder", lambda: None)
    monkeypatch.setenv(params.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(DataError) as caught:
        network.resolve_source(None, "musicnn-msd")
    text = str(caught.value)
    assert f"{params.WEIGHTS_ENV}={tmp_path} holds no MSD_musicnn/" in text
    assert "pip install --no-deps musicnn" in text and "--weights" in text
    with pytest.raises(DataError, match="folder holds no checkpoint"):
        network.check_source(str(tmp_path), "musicnn-msd")


def test_an_installed_musicnn_is_found_without_importing_it(tmp_path, monkeypatch):
    """importing musicnn would turn off TensorFlow's eager mode: find_spec locates it, nothing imports it."""
    package = tmp_path / "site" / "musicnn"
    (package / "MTT_vgg").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('musicnn was imported')\n")
    (package / "MTT_vgg" / ".index").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv(params.WEIGHTS_ENV, raising=False)
    assert network.installed_folder() == str(package)
    assert network.check_source(None, "vgg-mtt") == (str(package / "MTT_vgg"), "checkpoint")
    assert "musicnn" not in sys.modules


def _clips(shared):
    return sorted((shared / "data/gtzan/genres").glob("*/*.au")) + sorted((shared / "data/mtt/audio").glob("*/*.mp3"))


def test_parity_with_musicnn_on_the_shared_clips(shared, musicnn_weights, reference):
    """Issue 38's figures: taggrams within 1e-4, representations within 5e-4 (max |diff| / max |reference|) of
    musicnn's own extractor, for the four networks on the ten GTZAN tracks and the MagnaTagATune clip."""
    from tagger.embedding.audio import load

    patches = {p.stem: frontend.patches_of(frontend.log_mel(load(p, sample_rate=16000)))[0] for p in _clips(shared)}
    assert len(patches) == 11
    worst = {}
    for name in NETWORKS:
        folder = params.NETWORKS[name][0]
        net = network.network(network.read_weights(None, name), name)
        for stem, p in patches.items():
            out = net.predict(p, verbose=0, batch_size=32)
            for layer, values in out.items():
                want = reference[f"{folder}/{stem}/{layer}"]
                assert values.shape == want.shape, (name, stem, layer)
                worst[name, layer] = max(
                    worst.get((name, layer), 0.0), float(np.abs(values - want).max() / np.abs(want).max())
                )
    assert {k for k, v in worst.items() if v > (1e-4 if k[1] == "taggram" else 5e-4)} == set(), worst
    assert len(worst) == 2 * 4 + 2 * 2  # every output of every network was compared


def test_the_shipped_taggers_give_musicnns_own_top_tags(shared, musicnn_weights, reference, tmp_path):
    """`tagger tag --model musicnn-mtt` with its defaults, and the three others through the API: musicnn's top-3 in
    order on every clip; the taggram it writes is musicnn's per-patch one."""
    from tagger import cli
    from tagger.tagging.api import Tagger

    clips = _clips(shared)
    tops = json.loads(str(reference["top3"]))
    out = tmp_path / "tags.csv"
    assert (
        cli.main(["tag", *map(str, clips), "--model", "musicnn-mtt", "--out", str(out), "--taggram", str(tmp_path)])
        == 0
    )
    got = pd.read_csv(out)
    for _, row in got.iterrows():
        stem = pathlib.Path(row["path"]).stem
        assert [row["tag_1"], row["tag_2"], row["tag_3"]] == tops["MTT_musicnn"][stem], stem
    gram = np.load(next(tmp_path.rglob("blues.00000.au.npz")))
    np.testing.assert_allclose(gram["taggram"], reference["MTT_musicnn/blues.00000/taggram"], atol=1e-5)
    for name in NETWORKS[1:]:
        tagger = Tagger(name)
        paths, scores, failed = tagger.clip_scores([(str(c), None) for c in clips], workers=0)
        assert not failed and len(paths) == 11
        for path, clip_scores in zip(paths, scores):
            stem = pathlib.Path(path).stem
            top = [tagger.labels[i] for i in np.argsort(clip_scores)[::-1][:3]]
            assert top == tops[params.NETWORKS[name][0]][stem], (name, stem)


@pytest.mark.parametrize("name", NETWORKS)
def test_each_shipped_tagger_is_its_networks_own_output_layer_with_its_own_test_figures(name, musicnn_weights):
    """A stale or hand-edited bundle fails: its head's weights are the checkpoint's last layer, alpha 0 (the mean),
    its card's figure is in the network's experiment.result, its provenance the checkpoint's id."""
    from tagger.training import bundle

    folder_name = params.NETWORKS[name][0]
    folder = bundle.resolve(name)
    meta = json.loads(pathlib.Path(folder, "bundle.json").read_text())
    weights = network.read_weights(None, name)
    kernel, bias = network.output_layer(weights, name)
    head = bundle.load_head(folder, compile=False)
    np.testing.assert_array_equal(head.get_layer("patch_output").get_weights()[0], kernel)
    np.testing.assert_array_equal(head.get_layer("patch_output").get_weights()[1], bias)
    assert not np.any(head.get_layer("output").get_weights()[0])  # AutoPool's alpha 0: the mean
    result = pathlib.Path(musicnn_weights, folder_name, "experiment.result").read_text()
    assert f"AUC: {meta['card']['quality']['value']!r}\n" in result
    assert meta["provenance"]["weights"] == network.weights_id(weights, name) and meta["card"]["license"] == "ISC"
    labels = json.loads(pathlib.Path(folder, "labels.json").read_text())
    assert labels == list(params.LABELS[params.NETWORKS[name][2]]) and len(labels) == kernel.shape[1]


@pytest.mark.backends
def test_a_plain_weights_file_gives_musicnns_outputs_on_this_backend(shared, musicnn_weights, reference, tmp_path):
    """The exported file (no TensorFlow needed to read it) on the backend in force: musicnn's own outputs on a clip."""
    from tagger.embedding.extractor import make

    clip = shared / "data/gtzan/genres/blues/blues.00000.au"
    for name, layer in (("musicnn-mtt", "max_pool"), ("vgg-msd", "pool5")):
        plain = tmp_path / f"{name}.safetensors"
        wid = network.export_weights(None, plain, name)
        extractor = make(f"{name}:{layer}", weights=str(plain), batch_size=4)
        assert extractor.network_id == wid and extractor.dtype == "float32"
        values, times = extractor.embed(*_decoded(clip))
        want = reference[f"{params.NETWORKS[name][0]}/blues.00000/{layer}"]
        assert values.shape == want.shape and np.abs(values - want).max() / np.abs(want).max() < 5e-4
        assert times[1] == pytest.approx(2.992)


def _decoded(path):
    import soundfile as sf

    y, sr = sf.read(path, dtype="float32")
    return y, sr


@pytest.mark.slow
def test_the_whole_loop_on_musicnn_embeddings(shared, musicnn_weights, tmp_path):
    """prepare -> train -> evaluate -> tag (and its taggram plot) -> tag with Beam -> export -> tag with the bundle,
    on musicnn-mtt's penultimate layer of the ten shared GTZAN tracks."""
    import glob

    from helpers import make_config

    from tagger import cli

    genres = shared / "data/gtzan/genres"
    quiet = ["--workers", "0", "--no-progress"]
    kind = "musicnn-mtt:penultimate"
    data = tmp_path / "data"
    assert cli.main(["prepare", "gtzan", str(genres), "--embedding", kind, "--out", str(data), *quiet]) == 0
    entry = next((data / "cache").rglob("*.pkl"))
    index = pd.read_csv(data / "index.csv")
    assert len(index) == 10 and set(index["split"]) >= {"train", "valid"}
    config = {
        **make_config(data, data={"task": "singlelabel"}),
        "head": {"name": "dense", "hidden": 16, "n_layers": 1},
        "window": 5,
        "batch_size": 8,
        "epochs": 2,
        "steps_per_epoch": 3,
        "mux": {"n_active": 3, "rate": 2.0},
    }
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    run = tmp_path / "run"
    assert cli.main(["train", str(tmp_path / "cfg.json"), "--run-dir", str(run), "--quiet"]) == 0
    meta = json.loads((run / "bundle.json").read_text())
    assert meta["embedding"] == kind and meta["provenance"]["weights"].startswith("musicnn-mtt-sha1:")
    assert cli.main(["evaluate", str(run), "--split", "valid", "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval/metrics.json").read_text())["n_clips"] == (index["split"] == "valid").sum()
    clips = [str(genres / "blues/blues.00000.au"), str(genres / "rock/rock.00000.au")]
    tagged = ["tag", *clips, "--model", str(run), *quiet]
    assert cli.main([*tagged, "--out", str(tmp_path / "local.csv"), "--taggram", str(tmp_path / "grams")]) == 0
    gram = next((tmp_path / "grams").rglob("blues.00000.au.npz"))
    assert np.load(gram)["taggram"].shape == (10, 10)  # ten 3-s patches, ten genres
    assert cli.main(["plot", "taggram", str(gram), "--out", str(tmp_path / "gram.png")]) == 0
    assert (tmp_path / "gram.png").stat().st_size > 5000
    assert cli.main([*tagged, "--runner", "beam", "--out", str(tmp_path / "beam.csv")]) == 0
    local = pd.read_csv(tmp_path / "local.csv").sort_values("path")
    beam = pd.concat(pd.read_csv(s) for s in glob.glob(str(tmp_path / "beam-*-of-*.csv"))).sort_values("path")
    np.testing.assert_allclose(beam.filter(like="p_").to_numpy(), local.filter(like="p_").to_numpy(), atol=1e-4)
    assert cli.main(["export", str(run), "--out", str(tmp_path / "bundle"), "--name", "gtzan-musicnn"]) == 0
    again = ["tag", *clips, "--model", str(tmp_path / "bundle"), *quiet, "--out", str(tmp_path / "bundle.csv")]
    assert cli.main(again) == 0
    np.testing.assert_allclose(
        pd.read_csv(tmp_path / "bundle.csv").filter(like="p_").to_numpy(),
        pd.read_csv(tmp_path / "local.csv").filter(like="p_").to_numpy(),
        atol=1e-6,
    )
    assert entry.stat().st_size < 20_000  # 10 x 200 float32 values and the record
