"""VGGish's log-mel frontend in keras.ops (tagger.embedding.vggish.device_frontend) against the reference frontend:
log-mel within 1e-3 absolute, embeddings within 1e-4 of max, on every backend; its own frontend kind."""

import numpy as np
import pytest

from tagger.embedding import provenance
from tagger.embedding.vggish import device_frontend, frontend, params
from tagger.exceptions import ParameterError

SR = params.SAMPLE_RATE
LOG_MEL_TOLERANCE = 1e-3  # absolute, in log units (issue 40)
EMBEDDING_TOLERANCE = 1e-4  # max |difference| / max |reference|


def synthetic():
    """Full-scale sines from 50 Hz to 7.9 kHz, clicks, silence and noise: 3 s each, 16 kHz."""
    t = np.arange(3 * SR) / SR
    out = {f"sine {hz} Hz": np.sin(2 * np.pi * hz * t) for hz in (50, 125, 440, 1000, 3000, 7000, 7900)}
    clicks = np.zeros(3 * SR)
    clicks[::4000] = 1.0
    out.update(clicks=clicks, silence=np.zeros(3 * SR), noise=np.random.default_rng(0).uniform(-1, 1, 3 * SR))
    return {name: y.astype(np.float32) for name, y in out.items()}


def _device(fn, y, **kwargs):
    import keras

    return keras.ops.convert_to_numpy(fn(y[None], **kwargs))[0]


def _float32_floor(y):
    """What NumPy reaches in float32 (frames, window, FFT, mel and log all float32) against the float64 reference."""
    frames = np.lib.stride_tricks.sliding_window_view(y, params.STFT_WINDOW_SAMPLES)[:: params.STFT_HOP_SAMPLES]
    window = frontend.periodic_hann(params.STFT_WINDOW_SAMPLES).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(frames * window, params.FFT_LENGTH)).astype(np.float32)
    return np.log(spectrum @ frontend.mel_matrix().astype(np.float32) + np.float32(params.LOG_OFFSET))


@pytest.mark.backends
def test_the_device_log_mel_is_the_reference_within_float32_rounding():
    """Every complete frame, on signals where float32 rounding shows most (full-scale tones beside near-empty
    bins); the NumPy float32 floor is printed beside it (pytest -s)."""
    for name, y in synthetic().items():
        reference = frontend.log_mel_spectrogram(y)
        got = _device(device_frontend.log_mel, y)
        assert got.shape == reference.shape, name
        diff, floor = np.max(np.abs(got - reference)), np.max(np.abs(_float32_floor(y) - reference))
        print(f"{name}: device {diff:.2e}, NumPy float32 {floor:.2e}")
        assert diff <= LOG_MEL_TOLERANCE, (name, diff)


@pytest.mark.backends
@pytest.mark.parametrize("hop_seconds", [0.96, 0.48])
def test_device_patches_start_where_the_reference_patches_start(hop_seconds):
    """The same patches in the same places (no frame 56 samples late, none lost), at both hops."""
    y = np.random.default_rng(1).standard_normal(int(4.3 * SR)).astype(np.float32) * 0.3
    reference, _ = frontend.waveform_to_patches(y, SR, hop_seconds=hop_seconds)
    got = _device(device_frontend.patches, y, hop_seconds=hop_seconds)
    assert got.shape == reference.shape
    assert np.max(np.abs(got - reference)) <= LOG_MEL_TOLERANCE


@pytest.mark.backends
@pytest.mark.parametrize("samples", [400, 401, 559, 560, 719, 15600, 15601, 48000])
def test_frames_are_cut_without_a_gather_exactly_as_slices(samples):
    from keras import ops

    audio = (np.random.default_rng(samples).standard_normal((2, samples)) * 0.3).astype(np.float32)
    n = device_frontend.n_frames(samples)
    framed = ops.convert_to_numpy(device_frontend._frames(ops.convert_to_tensor(audio), n))
    expected = np.stack([audio[:, i * 160 : i * 160 + 400] for i in range(n)], axis=1)
    assert framed.shape == expected.shape and np.array_equal(framed, expected)


def test_too_little_audio_is_refused_naming_the_need():
    from tagger.exceptions import ParameterError

    with pytest.raises(ParameterError, match="at least 400"):
        device_frontend.log_mel(np.zeros((1, 399), np.float32))
    with pytest.raises(ParameterError, match="15,600 samples"):
        device_frontend.patches(np.zeros((1, 15599), np.float32))


def test_its_entries_are_their_own_frontend_kind():
    """The provenance names the frontend kind: an entry of one frontend never serves a reader of the other."""
    common = dict(weights="vggish-sha1:x", precision="float32", kind="raw")
    reference = provenance.record(frontend=params.frontend_params(), **common)
    device = provenance.record(frontend=device_frontend.frontend_params(), **common)
    assert provenance.differences(reference, device) == [
        "frontend: {frontend_kind=None} (cached), {frontend_kind=device} (wanted)"
    ]
    assert provenance.differences(device, device) == []


@pytest.mark.parametrize(
    "cached,wanted,hint",
    [
        (("bfloat16", "device"), ("float32", "reference"), "--precision bfloat16 --frontend device"),  # AMX's default
        (("bfloat16", "reference"), ("float32", "reference"), "--precision bfloat16 --frontend reference"),
        (("float32", "device"), ("bfloat16", "device"), "--precision float32 --frontend device"),
        (("float32", "device"), ("float32", "reference"), "--frontend device"),
        (("bfloat16", "reference"), ("bfloat16", "device"), "--frontend reference"),
    ],
)
def test_a_refusal_names_the_options_that_reuse_the_entries(cached, wanted, hint):
    """With the precision, the frontend is named too (its default follows the precision): the options reuse the
    entries whatever the defaults."""
    from tagger.embedding.cache import _reuse_hint

    def record(precision, kind):
        frontend = (device_frontend.frontend_params if kind == "device" else params.frontend_params)()
        return provenance.record(frontend=frontend, weights="vggish-sha1:x", precision=precision, kind="raw")

    have, want = record(*cached), record(*wanted)
    named = [d.split(":", 1)[0] for d in provenance.differences(have, want)]
    assert _reuse_hint(have, want, named) == f" ({hint} reuses them)"
    # a rerun with those options (and the defaults for the rest) wants just what the entries hold
    options = dict(zip(hint.split()[::2], hint.split()[1::2]))
    precision = options.get("--precision", wanted[0])
    kind = options.get("--frontend", device_frontend.default_kind(precision))
    assert provenance.differences(have, record(precision, kind)) == []


@pytest.mark.backends
def test_on_the_shared_audio_embeddings_stay_within_1e_4(gtzan_files, mtt_clip, embedder):
    """The ten GTZAN tracks and the MagnaTagATune clip: log-mel within 1e-3, and the fixture network's embeddings
    of the two frontends' patches within 1e-4 of max (both in float32)."""
    from tagger.embedding.audio import load

    for path in [*gtzan_files, mtt_clip]:
        y = load(str(path), sample_rate=SR)
        reference, _ = frontend.waveform_to_patches(y, SR)
        got = _device(device_frontend.patches, y)
        assert got.shape == reference.shape, path.name
        assert np.max(np.abs(got - reference)) <= LOG_MEL_TOLERANCE, path.name
        want, have = embedder.run(reference), embedder.run(got)
        assert np.max(np.abs(have - want)) / np.max(np.abs(want)) <= EMBEDDING_TOLERANCE, path.name


def test_a_patcher_can_hand_over_each_patchs_samples():
    """output='audio': the 15,600 samples each log-mel patch is made from, at the same times, fed in any blocks;
    a short clip is zero-padded to one patch as the log-mel patcher pads it."""
    y = np.random.default_rng(2).standard_normal(int(3.5 * SR)).astype(np.float32)
    for hop in (0.96, 0.48):
        mels, times = frontend.waveform_to_patches(y, SR, hop_seconds=hop)
        patcher = frontend.Patcher(hop_seconds=hop, output="audio")
        pieces = [patcher.feed(block) for block in np.array_split(y, 7)]
        audio = np.concatenate([p for p, _ in pieces])
        assert audio.shape == (len(mels), params.PATCH_SAMPLES)
        assert np.array_equal(np.concatenate([t for _, t in pieces]), times)
        step = params.hop_frames(hop) * params.STFT_HOP_SAMPLES
        assert all(np.array_equal(audio[i], y[i * step : i * step + params.PATCH_SAMPLES]) for i in range(len(audio)))
        # and back: each patch's own samples give the reference's log-mel patch (what a guard's fallback runs on)
        np.testing.assert_allclose(frontend.log_mel_of_samples(audio), mels, rtol=0, atol=1e-6)
    with pytest.warns(Warning, match="zero-padded"):
        short, _ = frontend.waveform_to_patches(y[:8000], SR, output="audio")
    assert short.shape == (1, params.PATCH_SAMPLES) and not short[0, 8000:].any()
    with pytest.raises(ParameterError, match=r"patches of shape \(2, 96, 64\): expected \(T, 15600\) samples"):
        frontend.log_mel_of_samples(np.zeros((2, 96, 64)))


@pytest.mark.backends
def test_an_embedder_on_the_device_frontend_embeds_as_the_reference_one(ckpt_path, embedder):
    """Embedder(frontend_kind='device'): the same embeddings within 1e-4 of max, the same times, and a frontend
    record that names its kind."""
    from tagger.embedding.vggish.extractor import Embedder

    device = Embedder(ckpt_path, batch_size=16, dtype="float32", frontend_kind="device")
    assert device.frontend == {**embedder.frontend, "frontend_kind": "device"}
    assert device.network_id == embedder.network_id  # the same network; the frontend is told apart on its own
    for name, y in synthetic().items():
        want, want_t = embedder.embed(y, SR)
        have, have_t = device.embed(y, SR)
        assert np.array_equal(have_t, want_t), name
        scale = max(np.max(np.abs(want)), 1e-12)
        assert np.max(np.abs(have - want)) / scale <= EMBEDDING_TOLERANCE, name


def test_embed_with_the_device_frontend_keeps_its_entries_apart(tmp_path, ckpt_path, make_audio, capsys):
    """`tagger embed --frontend device` fills a cache; the reference frontend's run is refused there naming the
    option that reuses the entries; the device run again skips them; a Beam run is refused before any work."""
    from tagger import cli

    for name in ("a.wav", "b.wav"):
        make_audio(f"clips/{name}", 2.0)
    common = ["embed", str(tmp_path / "clips"), "--out", str(tmp_path / "cache"), "--weights", ckpt_path]
    common += ["--workers", "0", "--no-progress", "--precision", "float32"]
    assert cli.main([*common, "--frontend", "device"]) == 0
    assert "embedded 2" in capsys.readouterr().out
    assert cli.main(common) == 1
    assert "(--frontend device reuses them)" in capsys.readouterr().err
    assert cli.main([*common, "--frontend", "device"]) == 0
    assert "skipped 2" in capsys.readouterr().out
    assert cli.main([*common, "--frontend", "device", "--runner", "beam"]) != 0
    assert "--frontend device runs with the network in this process" in capsys.readouterr().err


def test_prepare_takes_the_frontend_kind_and_keeps_the_older_spellings(tmp_path, ckpt_path, make_audio, capsys):
    """`prepare --frontend device` fills its cache as `embed --frontend device` does; `--frontend device` with a
    model that has no VGGish log-mel is refused; `--frontend melspec` still caches log-mel patches."""
    from tagger import cli
    from tagger.embedding import cache

    for i, genre in enumerate(("rock", "rock", "jazz", "jazz")):
        make_audio(f"lab/{genre}/{i}.wav", 2.0, freq=300 + 100 * i)
    common = ["prepare", "folder", str(tmp_path / "lab"), "--layout", "genre", "--weights", ckpt_path]
    common += ["--workers", "0", "--no-progress", "--precision", "float32", "--root", str(tmp_path / "lab")]
    assert cli.main([*common, "--out", str(tmp_path / "dev"), "--frontend", "device"]) == 0
    entry = cache.read_entry(str(tmp_path / "dev/cache"), "rock/0.wav")
    assert entry["provenance"]["frontend"]["frontend_kind"] == "device" and entry["provenance"]["kind"] == "raw"
    capsys.readouterr()
    refused = [*common, "--out", str(tmp_path / "f"), "--frontend", "device", "--embedding", "features"]
    assert cli.main(refused) == 1
    assert "--frontend device computes VGGish's log-mel with its network; features has no such frontend" in (
        capsys.readouterr().err
    )
    assert cli.main([*common, "--out", str(tmp_path / "mel"), "--frontend", "melspec"]) == 0
    assert cache.read_entry(str(tmp_path / "mel/cache"), "rock/0.wav")["provenance"]["kind"] == "melspec"
