"""The spectrogram path: log-mel patch caches, augmented copies in the index, CNN heads that learn."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import make_config

from tagger.embedding import cache, params
from tagger.embedding.spectrogram import PatchExtractor
from tagger.embedding.vggish import params as vggish_params
from tagger.embedding.vggish.frontend import waveform_to_patches

SR = 16000
CLASSES = ["low_tone", "high_tone", "clicks", "sweep"]


def _clip(kind, rng, seconds=3.0):
    """Four classes that differ in spectral and temporal shape, each with noise and random parameters."""
    t = np.arange(int(seconds * SR)) / SR
    if kind == "low_tone":
        y = np.sin(2 * np.pi * rng.uniform(150, 300) * t)
    elif kind == "high_tone":
        y = np.sin(2 * np.pi * rng.uniform(2000, 3500) * t)
    elif kind == "clicks":
        y = np.zeros_like(t)
        period = int(SR * rng.uniform(0.08, 0.15))
        y[rng.integers(0, period) :: period] = 1.0
        y = np.convolve(y, rng.standard_normal(64), mode="same")
    else:
        f0, f1 = rng.uniform(300, 600), rng.uniform(3000, 5000)
        y = np.sin(2 * np.pi * np.cumsum(np.geomspace(f0, f1, len(t))) / SR)
    y = 0.5 * y / (np.abs(y).max() + 1e-9) + 0.05 * rng.standard_normal(len(t))
    return y.astype(np.float32)


@pytest.fixture(scope="module")
def patch_data(tmp_path_factory):
    """Synthetic melspec dataset: 4 classes, 12 train / 4 valid / 6 test clips per class (chance: 25 %)."""
    root = tmp_path_factory.mktemp("patches")
    extractor = PatchExtractor()
    rng = np.random.default_rng(0)
    rows = []
    for c, kind in enumerate(CLASSES):
        for i, split in enumerate(["train"] * 12 + ["valid"] * 4 + ["test"] * 6):
            patches, times = extractor.embed(_clip(kind, rng), SR)
            track = f"{kind}{i:02d}"
            cache.write_entry(
                root / "cache",
                track,
                cache.make_entry(
                    patches,
                    times,
                    kind="melspec",
                    frontend=extractor.frontend,
                    weights=extractor.network_id,
                    source=track,
                ),
            )
            rows.append({"track_id": track, "path": "", "split": split, "labels": kind, "duration": 3.0})
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    (root / "vocab.json").write_text(json.dumps(CLASSES))
    return root


def test_patch_entries_are_float16_patches_of_the_vggish_frontend():
    y = _clip("sweep", np.random.default_rng(1), seconds=30.0)
    patches, times = PatchExtractor().embed(y, SR)
    reference, _ = waveform_to_patches(y, SR)
    assert patches.dtype == np.float16 and patches.shape == reference.shape == (31, 96, 64)
    np.testing.assert_allclose(patches.astype(np.float32), reference, atol=0.01)  # float16 keeps ~3 digits
    entry = cache.loads_entry(
        __import__("pickle").dumps(
            cache.make_entry(
                patches,
                times,
                kind="melspec",
                frontend=vggish_params.frontend_params(),
                weights="melspec-float16",
                source="x",
            )
        )
    )
    assert entry["embedding"].dtype == np.float16  # the restricted unpickler accepts float16


@pytest.mark.backends
@pytest.mark.slow  # whole training runs; in the development loop a CNN trains and tags on course patches (below)
@pytest.mark.parametrize(
    "head, settings, threshold",
    [
        ("cnn4", {"filters": [8, 16, 16, 32], "hidden": 32}, 0.5),
        ("cnn_gru", {"filters": [8, 16, 16, 32], "units": 16, "hidden": 32}, 0.5),
        ("parallel_cnn", {"filters": [8, 16, 16, 32], "hidden": 32}, 0.5),
        ("cnn_lstm", {"filters": [8, 16], "hidden": 32}, 0.5),
    ],
)
def test_cnn_heads_learn_save_and_resume(patch_data, tmp_path, head, settings, threshold):
    """Chance is 0.25 (four balanced classes); each head must reach `threshold` on held-out synthetic clips."""
    import keras

    from tagger.training.evaluate import evaluate
    from tagger.training.train import train

    cfg = {
        **make_config(patch_data, data={"task": "singlelabel"}),
        "head": {"name": head, **settings},
        "window": 2,
        "batch_size": 16,
        "epochs": 4,
        "steps_per_epoch": 12,
        "mux": {"n_active": 48, "rate": 4.0},
        "optimizer": {"name": "adam", "learning_rate": 0.003},
        "seed": 0,
    }
    run = tmp_path / "run"
    train(cfg, str(run), verbose=0)
    test = evaluate(str(run), split="test", plots=False)
    print(f"{head}: test accuracy {test['accuracy']:.3f} (chance 0.25, threshold {threshold})")
    assert test["accuracy"] >= threshold, (head, test["accuracy"])
    soft = evaluate(str(run), split="test", mode="soft", plots=False)  # sub-clip voting over windows of patches
    assert soft["n_clips"] == test["n_clips"] == 24 and soft["accuracy"] > 0.25
    assert json.loads((run / "bundle.json").read_text())["embedding"] == "melspec"
    model = keras.saving.load_model(run / "model.keras")
    assert model.inputs[0].shape[2:] == (96, 64)
    # killed after its second epoch, the run resumes from its checkpoint and ends as the uninterrupted one did
    from tagger.training.config import validate
    from tagger.training.train import fit

    def stop(epoch, score):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(validate(cfg), str(tmp_path / "again"), verbose=0, on_epoch=stop)
    assert len(pd.read_csv(tmp_path / "again/history.csv")) == 2
    resumed = fit(validate(cfg), str(tmp_path / "again"), verbose=0)
    first = json.loads((run / "metrics.json").read_text())
    assert resumed["valid_score"] == pytest.approx(first["valid_score"], abs=1e-6)
    np.testing.assert_allclose(
        pd.read_csv(tmp_path / "again/history.csv")["loss"], pd.read_csv(run / "history.csv")["loss"], rtol=1e-4
    )


def test_a_patch_head_refuses_an_embedding_cache_and_the_reverse(patch_data, tmp_path):
    from tagger.exceptions import DataError
    from tagger.training.train import train

    cfg = {
        **make_config(patch_data, data={"task": "singlelabel"}),
        "head": {"name": "dense"},
        "window": 2,
        "epochs": 1,
        "steps_per_epoch": 1,
    }
    with pytest.raises(DataError, match="use a CNN head"):
        train(cfg, str(tmp_path / "run"), verbose=0)


@pytest.mark.slow
def test_prepare_melspec_with_augmentation_on_the_shared_tracks(shared, gtzan_files, tmp_path):
    """The acceptance command: ten real tracks, two copies of each training track, patches of 381 KB per 30 s clip."""
    import subprocess
    import sys

    from tagger.datasets import gtzan
    from tagger.training.dataset import load_split, read_index

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tagger",
            "prepare",
            "gtzan",
            str(shared / "data/gtzan/genres"),
            "--frontend",
            "melspec",
            "--augment",
            "2",
            "--out",
            "mel",
            "--root",
            str(shared / "data/gtzan/genres"),
            "--no-progress",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    index = read_index(str(tmp_path / "mel/index.csv"))
    assignment = gtzan.read_splits(shared / "data/gtzan/splits/dnn-mgr", "filtered")
    originals = [f.stem for f in gtzan_files if f.stem in assignment]
    n_train = sum(assignment[s] == "train" for s in originals)
    assert len(index) == len(originals) + 2 * n_train
    copies = index[index["augmented_from"] != ""]
    assert set(copies["split"]) == {"train"}  # never validation or test
    # track ids: the audio paths relative to --root (blues/blues.00000.au)
    assert all(assignment[src.split("/")[1].rsplit(".", 1)[0]] == "train" for src in copies["augmented_from"])
    entries = sorted((tmp_path / "mel/cache").rglob("*.pkl"))
    assert len(entries) == len(index)
    blues = cache.read_entry(tmp_path / "mel/cache", "blues/blues.00000.au")
    assert blues["kind"] == "melspec" and blues["embedding"].shape == (31, 96, 64)
    assert (tmp_path / "mel/cache/blues/blues.00000.au.pkl").stat().st_size < 400_000
    one = copies["track_id"].iloc[0]
    copy_entry = cache.read_entry(tmp_path / "mel/cache", one)
    source_entry = cache.read_entry(tmp_path / "mel/cache", copies["augmented_from"].iloc[0])
    assert not np.array_equal(copy_entry["embedding"][:5], source_entry["embedding"][:5])
    # loading: copies in training data only
    cfg = {**make_config(tmp_path / "mel")}
    assert len(load_split(cfg, "train", augmented=True)[0]) == 3 * n_train
    assert len(load_split(cfg, "train")[0]) == n_train


def test_course_patches_match_librosa_and_a_cnn_tags_through_them(tmp_path):
    """The course projects' settings: 128 x 128 dB patches; a head trained on them tags audio with the same frontend."""
    from tagger.embedding.kernels import import_librosa

    librosa = import_librosa()  # its kernels compiled by one process at a time, as tagger's own calls are
    import soundfile as sf

    from tagger.embedding.spectrogram import course_patches
    from tagger.tagging.api import Tagger
    from tagger.training.train import train

    rng = np.random.default_rng(2)
    y = _clip("sweep", rng, seconds=7.0)
    patches, times = course_patches(y, SR)
    y22 = librosa.resample(y, orig_sr=SR, target_sr=22050, res_type="soxr_hq")
    ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y22, sr=22050, n_fft=1024, hop_length=512, n_mels=128)).T
    assert patches.shape == (-(-len(ref) // 128), 128, 128) and patches.dtype == np.float16
    np.testing.assert_allclose(patches.reshape(-1, 128)[: len(ref)].astype(np.float32), ref, atol=0.05)
    assert times[1] == pytest.approx(128 * 512 / 22050)

    extractor = PatchExtractor(frontend="course")
    rows = []
    for i, kind in enumerate(CLASSES * 3):
        p, t = extractor.embed(_clip(kind, rng), SR)
        cache.write_entry(
            tmp_path / "cache",
            f"c{i}",
            cache.make_entry(
                p, t, kind="melspec", frontend=extractor.frontend, weights=extractor.network_id, source=f"c{i}"
            ),
        )
        rows.append(
            {"track_id": f"c{i}", "path": "", "split": "train" if i < 8 else "valid", "labels": kind, "duration": 3.0}
        )
    pd.DataFrame(rows).to_csv(tmp_path / "index.csv", index=False)
    (tmp_path / "vocab.json").write_text(json.dumps(CLASSES))
    cfg = {
        **make_config(tmp_path, data={"task": "singlelabel"}),
        "head": {"name": "cnn4", "filters": [8, 8, 16, 16], "hidden": 16},
        "window": 1,
        "batch_size": 8,
        "epochs": 1,
        "steps_per_epoch": 3,
        "mux": {"n_active": 8, "rate": 2.0},
    }
    train(cfg, str(tmp_path / "run"), verbose=0)
    assert json.loads((tmp_path / "run/bundle.json").read_text())["frontend"] == params.course_params()
    sf.write(tmp_path / "clip.wav", _clip("clicks", rng), SR)
    tagger = Tagger(str(tmp_path / "run"))
    assert tagger.extractor.course  # the run's own frontend, from its bundle.json
    df = tagger.tag([str(tmp_path / "clip.wav")], workers=0)
    assert len(df) == 1 and df["tag_1"][0] in CLASSES
    # exported like any run (`tagger export` crashed on a patch-trained run, KeyError 'melspec', after writing half
    # the bundle), and the bundle tags as the run does
    from tagger import cli

    assert cli.main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "bundle")]) == cli.EXIT_OK
    meta = json.loads((tmp_path / "bundle/bundle.json").read_text())
    assert meta["embedding"] == meta["card"]["embedding"]["kind"] == "melspec"
    assert meta["frontend"] == params.course_params()
    assert "log-mel patches" in (tmp_path / "bundle/MODEL.md").read_text()
    exported = Tagger(str(tmp_path / "bundle")).tag([str(tmp_path / "clip.wav")], workers=0)
    assert list(exported["tag_1"]) == list(df["tag_1"])
