"""Shared fixtures: the real data in ../shared, fixture VGGish weights, synthetic audio (helpers in helpers.py)."""

import os
import warnings

import pytest
from helpers import SHARED, write_audio

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# the suite's numerics are float32 references, whatever this CPU's `auto` is (bfloat16 with AMX or AVX512_BF16):
# tests of the default itself clear it (tests/test_precision.py)
os.environ["TAGGER_PRECISION"] = "float32"


@pytest.fixture(scope="session")
def shared():
    """The ../shared folder of real data (skips with the reason when absent)."""
    if not (SHARED / "README.md").exists():
        pytest.skip(f"real data folder {SHARED} is absent (set TAGGER_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def gtzan_files(shared):
    files = sorted((shared / "data/gtzan/genres").glob("*/*.au"))
    assert len(files) == 10
    return files


@pytest.fixture(scope="session")
def mtt_clip(shared):
    return shared / "data/mtt/audio/e/joram-moments_of_clarity-08-solipsism-59-88.mp3"


@pytest.fixture(scope="session")
def pca_params(shared):
    return shared / "vggish/vggish_pca_params.npz"


@pytest.fixture(scope="session")
def fixture_weights():
    from tagger.testing import random_weights

    return random_weights(seed=0)


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory, fixture_weights):
    """The fixture weights in the official layouts: V1 and V2 checkpoints and a SavedModel."""
    from tagger.testing import write_checkpoint, write_savedmodel

    folder = tmp_path_factory.mktemp("weights")
    write_checkpoint(fixture_weights, str(folder / "v1" / "vggish_model.ckpt"), version=1)
    write_checkpoint(fixture_weights, str(folder / "v2" / "vggish_model.ckpt"), version=2)
    write_savedmodel(fixture_weights, folder / "savedmodel")
    return folder


@pytest.fixture(scope="session")
def ckpt_path(weights_dir):
    return str(weights_dir / "v1" / "vggish_model.ckpt")


@pytest.fixture(scope="session")
def embedder(ckpt_path):
    """A VGGish embedder over the fixture weights (loaded through the real checkpoint path)."""
    from tagger.embedding.embed import Embedder

    return Embedder(ckpt_path, batch_size=16)


@pytest.fixture
def make_audio(tmp_path):
    def make(name, seconds, **kwargs):
        return write_audio(tmp_path / name, seconds, **kwargs)

    return make


@pytest.fixture
def bad_files(tmp_path):
    """An empty file, a text file named .wav, and a WAV cut inside its header."""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.wav").write_text("this is not audio\n" * 20)
    good = write_audio(tmp_path / "whole.wav", 2.0)
    (folder / "cut_header.wav").write_bytes(good.read_bytes()[:30])
    return folder


@pytest.fixture(autouse=True)
def _warnings_are_visible():
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        yield


@pytest.fixture(scope="session")
def audioset_data(shared, tmp_path_factory):
    """The released AudioSet features prepared by tagger.datasets.audioset (cache + indexes)."""
    from tagger.datasets import audioset

    out = tmp_path_factory.mktemp("audioset")
    audioset.prepare(shared / "data/audioset", out, progress=False)
    return out
