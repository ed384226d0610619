"""Shared fixtures (the real data in ../shared, fixture VGGish weights, synthetic audio; helpers in helpers.py),
the test tiers and the budget printed at the end of every run.

Tiers (markers registered in pyproject.toml; ``docs``: docs/development.md's Tests section):

- ``unit``: every test not marked otherwise, given the marker here. In-process, synthetic data; starting a
  process (``subprocess``, a spawned decode worker) fails the test with a sentence saying to mark it.
- ``integration``: marked by hand where a test starts ``tagger``/``python`` processes, and given here to
  every test that reads the real files in ../shared (a fixture of :data:`SHARED_FIXTURES`).
- ``slow``: whole jobs (kill and resume, cloud, wheels, Beam, backends compared, training on AudioSet).
"""

import atexit
import collections
import importlib.metadata
import json
import multiprocessing.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

# NumPy < 2.2 runs `lscpu` the first time numpy.testing is imported (scipy imports it): imported here, before the
# unit tier's guard against starting processes, not inside a test
import numpy.testing  # noqa: F401
import pytest
from fixture_cache import cached_folder, code_hash, files_hash
from helpers import SHARED, write_audio

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `uname -p`, run once and cached by the platform module: its first caller (the TensorFlow import, through h5py) would
# otherwise start that process inside whichever unit test imports Keras first, and the unit guard fails that test
platform.processor()
if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers on two cores: one TensorFlow intra-op thread each (inherited by the processes tests start),
    # instead of each worker's kernels and every `tagger` process they start competing with two threads
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
# the suite's numerics are float32 references, whatever this CPU's `auto` is (bfloat16 with AMX or AVX512_BF16):
# tests of the default itself clear it (tests/test_precision.py)
os.environ["TAGGER_PRECISION"] = "float32"
# the weights-id memo (tagger.embedding.weights) of this run's own, not the user's ~/.cache/tagger
os.environ["TAGGER_CACHE_HOME"] = tempfile.mkdtemp(prefix="tagger-cache-home-")
atexit.register(shutil.rmtree, os.environ["TAGGER_CACHE_HOME"], ignore_errors=True)


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


#: what the fixture weights are made from: the writers, the official names, the seed, TensorFlow's writers
WEIGHTS_KEY = (
    "seed 0",
    code_hash("tagger/testing.py", "tagger/embedding/vggish/network.py", "tagger/embedding/vggish/params.py"),
    "tensorflow " + importlib.metadata.version("tensorflow"),
)


@pytest.fixture(scope="session")
def weights_dir(fixture_weights):
    """The fixture weights in the official layouts: V1 and V2 checkpoints, a SavedModel and the plain ``.npz``
    (read-only; made once across workers and lanes, :mod:`fixture_cache`)."""

    def build(folder):
        from tagger.embedding.vggish import network as vggish
        from tagger.testing import write_checkpoint, write_savedmodel

        write_checkpoint(fixture_weights, str(folder / "v1" / "vggish_model.ckpt"), version=1)
        write_checkpoint(fixture_weights, str(folder / "v2" / "vggish_model.ckpt"), version=2)
        write_savedmodel(fixture_weights, folder / "savedmodel")
        (folder / "plain").mkdir()
        vggish.export_weights(str(folder / "v1" / "vggish_model.ckpt"), folder / "plain" / "vggish.npz")

    return cached_folder("weights", "\n".join(WEIGHTS_KEY), build)


@pytest.fixture(scope="session")
def plain_weights(weights_dir):
    """The fixture checkpoint exported as the plain ``.npz`` file (``tagger weights export``)."""
    return weights_dir / "plain" / "vggish.npz"


@pytest.fixture(scope="session")
def ckpt_path(weights_dir):
    return str(weights_dir / "v1" / "vggish_model.ckpt")


@pytest.fixture(scope="session")
def embedder(ckpt_path):
    """A VGGish embedder over the fixture weights (loaded through the real checkpoint path)."""
    from tagger.embedding.vggish.extractor import Embedder

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
def audioset_data(shared):
    """The released AudioSet features prepared by tagger.datasets.audioset (cache + indexes); read-only, made
    once across workers and lanes for this code and these record files (:mod:`fixture_cache`)."""
    from tagger.datasets import audioset

    source = shared / "data/audioset"
    key = f"{code_hash('tagger')}\n{files_hash(source)}"
    return cached_folder("audioset", key, lambda folder: audioset.prepare(source, folder, progress=False))


# ---- tiers ----

#: fixtures that read the real files in ../shared: a test using one (directly or through another) is `integration`
SHARED_FIXTURES = {"shared"}
TIERS = ("unit", "integration", "slow")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Give each test its tier marker before `-m` selects (tryfirst: before the mark plugin deselects)."""
    for item in items:
        if item.get_closest_marker("slow") or item.get_closest_marker("integration"):
            continue
        if SHARED_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


def _no_process(*args, **kwargs):
    raise RuntimeError(
        "a unit-tier test started a process: mark it @pytest.mark.integration (a process boundary), or call the"
        " command in-process (tagger.cli.main([...]), workers=0)"
    )


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(request, monkeypatch):
    """The unit tier's promise, checked: no subprocess and no spawned worker process."""
    if request.node.get_closest_marker("unit") is not None:
        monkeypatch.setattr(subprocess.Popen, "_execute_child", _no_process)
        monkeypatch.setattr(multiprocessing.util, "spawnv_passfds", _no_process)
    yield


def _tier(keywords):
    return next((tier for tier in reversed(TIERS) if tier in keywords), "unit")


class _Budget:
    """Seconds spent per tier (set-up, call and tear-down of each test, summed over workers) and the wall time."""

    def __init__(self):
        self.start = time.monotonic()
        self.seconds = collections.Counter()
        self.tests = collections.Counter()


_BUDGET = _Budget()


def pytest_runtest_logreport(report):
    tier = _tier(report.keywords)
    _BUDGET.seconds[tier] += report.duration
    if report.when == "call":
        _BUDGET.tests[tier] += 1


def pytest_terminal_summary(terminalreporter):
    if not _BUDGET.tests:
        return
    wall = time.monotonic() - _BUDGET.start
    write = terminalreporter.write_line
    terminalreporter.section("time by tier (summed over workers)")
    for tier in TIERS:
        if _BUDGET.tests[tier]:
            write(f"{tier:<12} {_BUDGET.tests[tier]:4d} tests {_BUDGET.seconds[tier]:8.1f} s")
    write(
        f"{'all':<12} {sum(_BUDGET.tests.values()):4d} tests {sum(_BUDGET.seconds.values()):8.1f} s; wall {wall:.1f} s"
    )


@pytest.fixture
def fake(tmp_path):
    """``(env, calls)``: PATH with recording gcloud and gsutil (tests/fake_gcloud.py); gs:// lives in tmp_path/gcs.

    For tests/test_cloud.py and the cloud tutorial (tests/test_docs.py)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "gsutil"):
        target = bin_dir / tool
        with open(os.path.join(os.path.dirname(__file__), "fake_gcloud.py"), encoding="utf-8") as f:
            target.write_text(f"#!{sys.executable}\n" + f.read())
        target.chmod(0o755)
    (tmp_path / "gcs").mkdir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
        "FAKE_LOG": str(tmp_path / "calls.jsonl"),
        "FAKE_GCS": str(tmp_path / "gcs"),
    }

    def calls():
        path = tmp_path / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    return env, calls
