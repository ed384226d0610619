"""The default precision (one rule, from the CPU's flags), the precision guard, and caches across machines.

The four recorded ``/proc/cpuinfo`` texts in ``tests/cpuinfo`` are the CPUs this project runs on: the AMD
EPYC with AVX512_BF16 and the AMD EPYC (Zen 3) with AVX2 only (each read on that machine), an Intel Xeon
with AMX and one with neither AMX nor AVX512_BF16 (as Linux prints those models' flags). The rest of the suite runs in float32 (``TAGGER_PRECISION``, set in conftest.py): its
references are float32 ones; these tests clear it where they test the default.
"""

import json
import pathlib
import sys
import warnings

import numpy as np
import pytest

from tagger import backend
from tagger.embedding import audio, params
from tagger.embedding.embed import default_dtype, embed_files, guard_difference, resolve_dtype
from tagger.embedding.vggish import frontend
from tagger.embedding.vggish import params as vggish_params
from tagger.embedding.vggish.extractor import Embedder
from tagger.exceptions import DataError, ParameterError, TaggerWarning

CPUINFO = pathlib.Path(__file__).parent / "cpuinfo"
CPUS = {
    "intel-xeon-amx": "bfloat16",  # 4.7x float32 on VGGish
    "amd-epyc-avx512-bf16": "bfloat16",  # 1.7-1.8x
    "intel-xeon-avx512": "float32",  # bfloat16 emulated: 4.5x slower
    "amd-epyc-avx2": "float32",  # Zen 3, no AVX-512 at all: no bfloat16 path
}


READ_FLAGS = backend.cpu_flags  # the real parser (the fixture below replaces the module's)


def flags_of(cpu):
    return READ_FLAGS((CPUINFO / f"{cpu}.txt").read_text())


@pytest.fixture
def on_cpu(monkeypatch):
    """Pretend this process runs on a recorded CPU, without a GPU, with no precision set by the environment."""
    monkeypatch.delenv(params.PRECISION_ENV, raising=False)
    monkeypatch.setattr(backend, "gpus", lambda: [])

    def use(cpu):
        monkeypatch.setattr(backend, "cpu_flags", lambda cpuinfo=None: flags_of(cpu))

    return use


@pytest.mark.parametrize("cpu,expected", sorted(CPUS.items()))
def test_auto_picks_by_the_recorded_cpu_flags(cpu, expected):
    flags = flags_of(cpu)
    assert ("amx_bf16" in flags, "avx512_bf16" in flags) == {
        "intel-xeon-amx": (True, True),
        "amd-epyc-avx512-bf16": (False, True),
        "intel-xeon-avx512": (False, False),
        "amd-epyc-avx2": (False, False),
    }[cpu]
    assert backend.cpu_dtype(flags, "tensorflow") == expected
    # JAX and PyTorch on a CPU keep float32 (JAX's CPU bfloat16 ran slower than its float32 on the EPYC)
    assert backend.cpu_dtype(flags, "jax") == backend.cpu_dtype(flags, "torch") == "float32"


def test_cpu_flags_without_a_flags_line_mean_float32():
    assert backend.cpu_flags("processor : 0\nmodel name : something\n") == frozenset()
    assert backend.cpu_dtype(frozenset(), "tensorflow") == "float32"
    assert "asimd" in backend.cpu_flags("processor : 0\nFeatures : fp asimd evtstrm aes\n")  # Arm's name for it


@pytest.mark.parametrize("cpu", sorted(CPUS))
def test_the_api_and_the_cli_share_one_default(on_cpu, cpu, ckpt_path):
    from tagger.cli import build_parser
    from tagger.cli.options import network_options

    on_cpu(cpu)
    assert default_dtype() == "auto" and resolve_dtype(None) == CPUS[cpu]
    args = build_parser().parse_args(["embed", "x.wav", "--out", "c"])
    emb = Embedder(ckpt_path, batch_size=16, **{k: v for k, v in network_options(args).items() if k != "batch_size"})
    assert emb.dtype == Embedder(ckpt_path, batch_size=16).dtype == CPUS[cpu]
    assert emb.network_id.endswith("+bfloat16") == (CPUS[cpu] == "bfloat16")  # recorded as what it resolved to
    # the frontend follows the precision: the device's with a bfloat16 network, the reference's with a float32 one
    frontend_kind = "device" if CPUS[cpu] == "bfloat16" else "reference"
    assert emb.frontend_kind == Embedder(ckpt_path, batch_size=16).frontend_kind == frontend_kind
    assert emb.frontend.get("frontend_kind", "reference") == frontend_kind  # what its entries record
    beam = build_parser().parse_args(["embed", "x.wav", "--out", "c", "--runner", "dataflow"])
    assert network_options(beam)["frontend_kind"] == "reference"  # the Beam workers make the reference's patches


def test_the_environment_sets_the_default_and_a_bad_value_is_named(on_cpu, monkeypatch):
    on_cpu("intel-xeon-amx")
    monkeypatch.setenv(params.PRECISION_ENV, "float32")
    assert resolve_dtype(None) == "float32"
    assert resolve_dtype("auto") == "bfloat16"  # an explicit choice beats the environment
    monkeypatch.setenv(params.PRECISION_ENV, "fp8")
    with pytest.raises(ParameterError, match=r"TAGGER_PRECISION='fp8' must be one of float32, bfloat16"):
        resolve_dtype(None)


def test_guard_difference_is_relative_to_the_largest_float32_value():
    ref = np.array([[1.0, -4.0], [2.0, 0.0]])
    assert guard_difference(ref + [[0.0, 0.2], [0.0, 0.0]], ref) == pytest.approx(0.05)
    assert guard_difference(np.array([[np.nan, 0.0], [0.0, 0.0]]), ref) == float("inf")


@pytest.fixture(scope="module")
def clips(tmp_path_factory, gtzan_files):
    """Three real GTZAN tracks (31 patches each): the guard's 64 patches span the first three files."""
    import shutil

    folder = tmp_path_factory.mktemp("clips")
    for f in gtzan_files[:3]:
        shutil.copy(f, folder / f.name)
    return folder


def test_the_guard_passes_bfloat16_on_real_patches_and_frees_float32(ckpt_path, clips, tmp_path):
    emb = Embedder(ckpt_path, batch_size=16, dtype="bfloat16")
    assert emb.guard_pending and emb._reference is not None
    summary = embed_files([clips], tmp_path / "cache", extractor=emb, workers=0, progress=False)
    assert summary["embedded"] == 3
    guard = emb.guard
    assert guard["patches"] == params.GUARD_PATCHES and not guard["fell_back"]
    assert 0 < guard["difference"] < params.GUARD_TOLERANCE, guard
    assert emb._reference is None and emb.dtype == "bfloat16"  # the float32 copy is gone
    entry = next((tmp_path / "cache").rglob("*.pkl"))
    from tagger.embedding import cache

    assert cache.read_entry(entry)["weights"].endswith("+bfloat16")


def test_a_tripped_guard_falls_back_warns_and_records_float32(ckpt_path, embedder, clips, tmp_path):
    """Tolerance 0: bfloat16 always differs, so the run falls back, says by how much, and records float32."""
    from tagger.embedding import cache

    emb = Embedder(ckpt_path, batch_size=16, dtype="bfloat16", guard_tolerance=0)
    with pytest.warns(
        TaggerWarning, match=r"bfloat16 differs from float32 on this run's first 64 patches by [0-9.e-]+"
    ):
        embed_files([clips], tmp_path / "cache", extractor=emb, workers=0, progress=False)
    assert emb.dtype == "float32" and emb.guard["fell_back"] and emb.guard["difference"] > 0
    assert emb.network_id == embedder.network_id  # no "+bfloat16"
    for path in sorted((tmp_path / "cache").rglob("*.pkl")):
        entry = cache.read_entry(path)
        assert entry["weights"] == embedder.network_id
        e, _ = embedder.embed(audio.load(entry["source"]), vggish_params.SAMPLE_RATE)
        np.testing.assert_allclose(entry["embedding"], e, rtol=0, atol=1e-5)  # computed in float32, not relabelled
    # a float32 reader reuses the entries the fallback made
    again = embed_files([clips], tmp_path / "cache", extractor=embedder, workers=0, progress=False)
    assert again["skipped"] == 3 and again["embedded"] == 0


def test_a_tripped_guard_makes_a_tag_output_record_float32(ckpt_path, clips, tmp_path, shared):
    from tagger.tagging.api import Tagger
    from tagger.tagging.writer import tag_to_file

    pca = shared / "vggish/vggish_pca_params.npz"
    low = Embedder(ckpt_path, batch_size=16, dtype="bfloat16", guard_tolerance=0, postprocess=True, pca_params=pca)
    tagger = Tagger("music", extractor=low, allow_other_embedding=True)
    with pytest.warns(TaggerWarning, match="falling back to float32"):
        summary = tag_to_file(tagger, [clips], tmp_path / "tags.csv", workers=0, progress=False)
    assert summary["tagged"] == 3
    meta = json.loads((tmp_path / "tags.csv.meta.json").read_text())
    assert meta["settings"]["precision"] == "float32", meta


def test_the_guard_measures_the_first_call_of_the_array_api(ckpt_path, embedder, gtzan_files):
    """The default frontend falls back with the precision: the float32 reference's embeddings, from the call
    whose patches were already cut as samples for the device frontend."""
    emb = Embedder(ckpt_path, batch_size=16, dtype="bfloat16", guard_tolerance=0)
    assert emb.frontend_kind == "device"
    y = audio.load(gtzan_files[0])
    with pytest.warns(TaggerWarning, match="first 31 patches"):  # a 30 s clip: all it has
        got, _ = emb.embed(y, vggish_params.SAMPLE_RATE)
    assert emb.dtype == "float32" and emb.frontend_kind == "reference" and emb.frontend == embedder.frontend
    np.testing.assert_allclose(got, embedder.embed(y, vggish_params.SAMPLE_RATE)[0], rtol=0, atol=1e-5)
    named = Embedder(ckpt_path, batch_size=16, dtype="bfloat16", guard_tolerance=0, frontend_kind="device")
    with pytest.warns(TaggerWarning, match="falling back to float32"):
        named.embed(y[: 3 * vggish_params.SAMPLE_RATE], vggish_params.SAMPLE_RATE)
    assert named.dtype == "float32" and named.frontend_kind == "device"  # a frontend asked for is kept


def test_a_guard_that_trips_after_the_provenance_is_recorded_stops_the_run(ckpt_path, gtzan_files):
    """A Beam worker (or a run whose first files gave no audio) cannot relabel what its settings recorded."""
    emb = Embedder(ckpt_path, batch_size=16, dtype="bfloat16", guard_tolerance=0, frontend_kind="reference")
    emb.settle([str(gtzan_files[0].parent / "missing.au")])  # no audio to measure: the first batch will be
    patches, _ = frontend.waveform_to_patches(audio.load(gtzan_files[0]))
    with pytest.raises(DataError, match=r"already records bfloat16: rerun with --precision float32"):
        emb.run(patches)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = Embedder(ckpt_path, batch_size=16, dtype="bfloat16", frontend_kind="reference")  # the tolerance passes
        ok.settle(())
        assert ok.run(patches).shape == (len(patches), 128) and not ok.guard["fell_back"]


def test_no_guard_in_float32_or_when_turned_off(ckpt_path):
    assert Embedder(ckpt_path, batch_size=16, dtype="float32").guard is None
    off = Embedder(ckpt_path, batch_size=16, dtype="bfloat16", guard_tolerance=None)
    assert off.guard is None and off._reference is None
    with pytest.raises(ParameterError, match="guard_tolerance=-1 must be >= 0"):
        Embedder(ckpt_path, batch_size=16, dtype="bfloat16", guard_tolerance=-1)


def test_a_cache_filled_on_an_amx_machine_is_refused_by_default_elsewhere(on_cpu, ckpt_path, clips, tmp_path):
    """The provenance rule (exact precision match) across machines whose ``auto`` differs."""
    cache_dir = tmp_path / "cache"
    on_cpu("intel-xeon-amx")
    amx = Embedder(ckpt_path, batch_size=16)
    assert amx.dtype == "bfloat16"
    embed_files([clips], cache_dir, extractor=amx, workers=0, progress=False)

    on_cpu("intel-xeon-avx512")
    plain = Embedder(ckpt_path, batch_size=16)
    assert plain.dtype == "float32"
    with pytest.raises(
        DataError,
        match=r"precision: bfloat16 \(cached\), float32 \(wanted\); frontend: .* \(--precision bfloat16 --frontend device reuses them\)",
    ):
        embed_files([clips], cache_dir, extractor=plain, workers=0, progress=False)
    # the precision the entries name, asked for explicitly, reuses them all (slowly on this CPU, but only to
    # embed what is missing; here nothing is)
    reuse = Embedder(ckpt_path, batch_size=16, dtype="bfloat16")
    summary = embed_files([clips], cache_dir, extractor=reuse, workers=0, progress=False)
    assert summary["skipped"] == 3 and summary["embedded"] == 0


def test_the_guard_decodes_only_the_start_of_a_long_file(ckpt_path, tmp_path, monkeypatch):
    import soundfile as sf

    from tagger.embedding.vggish import extractor as embed_module

    long = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    sf.write(long, (0.1 * rng.standard_normal(600 * 16000)).astype(np.float32), 16000)  # ten minutes
    decoded = []
    real_blocks = embed_module.iter_blocks

    def counting(path, **kwargs):
        for block in real_blocks(path, **kwargs):
            decoded.append(len(block))
            yield block

    monkeypatch.setattr(embed_module, "iter_blocks", counting)
    emb = Embedder(ckpt_path, batch_size=16, dtype="bfloat16")
    emb.settle([long])
    assert emb.guard["patches"] == params.GUARD_PATCHES
    assert 64 * 0.96 * 16000 <= sum(decoded) < 120 * 16000  # about a minute of the ten


@pytest.mark.parametrize("cpu,expected", sorted(CPUS.items()))
def test_auto_is_known_without_a_backend_where_no_accelerator_can_be_seen(on_cpu, monkeypatch, tmp_path, cpu, expected):
    """What a rerun with nothing to do relies on (tagger.embedding.extractor.plan): auto's precision before Keras loads."""
    on_cpu(cpu)
    monkeypatch.delitem(sys.modules, "keras", raising=False)  # a command's first steps: Keras not imported yet
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    nodes = []
    monkeypatch.setattr(backend, "_accelerator_nodes", lambda: list(nodes))
    assert backend.planned_name() == "tensorflow" and backend.planned_auto_dtype() == expected  # no keras.json
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    assert backend.planned_name() == "jax" and backend.planned_auto_dtype() == "float32"
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # the environment wins over keras.json, as in Keras
    assert backend.planned_auto_dtype() == expected
    nodes.append("/dev/nvidia0")  # a GPU may be there: only the backend can tell
    assert backend.gpu_possible() and backend.planned_auto_dtype() is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not backend.gpu_possible() and backend.planned_auto_dtype() == expected
    (tmp_path / "keras.json").write_text("{not json")
    monkeypatch.delenv("KERAS_BACKEND")
    assert backend.planned_name() is None and backend.planned_auto_dtype() is None
