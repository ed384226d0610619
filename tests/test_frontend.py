import warnings

import numpy as np
import pytest
from reference_vggish_input import reference_examples

from tagger.embedding.vggish import frontend, params
from tagger.exceptions import AudioError, ParameterError, TaggerWarning

SR = params.SAMPLE_RATE


def sine(freq, seconds, sr=SR, amplitude=0.5):
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


SIGNALS = {
    "sine_1k": lambda: sine(1000.0, 2.0),
    "silence": lambda: np.zeros(2 * SR, np.float32),
    "white_noise": lambda: (np.random.default_rng(0).uniform(-1, 1, 2 * SR)).astype(np.float32),
    "chirp": lambda: np.sin(2 * np.pi * np.cumsum(np.linspace(100, 7000, 3 * SR)) / SR).astype(np.float32),
}


@pytest.mark.parametrize("name", sorted(SIGNALS))
@pytest.mark.parametrize("hop_seconds", [0.96, 0.48])
def test_patches_match_reference(name, hop_seconds):
    y = SIGNALS[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TaggerWarning)
        patches, times = frontend.waveform_to_patches(y, SR, hop_seconds=hop_seconds)
    ref = reference_examples(y, hop_frames=int(round(hop_seconds * 100)))
    assert patches.shape == ref.shape
    assert patches.dtype == np.float32
    np.testing.assert_allclose(patches, ref, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(times, np.arange(len(ref)) * hop_seconds)


def test_sine_energy_in_the_right_band():
    patches, _ = frontend.waveform_to_patches(sine(1000.0, 1.0), SR)
    edges = np.linspace(frontend.hertz_to_mel(125.0), frontend.hertz_to_mel(7500.0), 66)
    centres_hz = 700.0 * (np.exp(edges[1:-1] / 1127.0) - 1.0)
    assert np.argmax(patches[0].mean(axis=0)) == np.argmin(np.abs(centres_hz - 1000.0))


def test_silence_is_log_offset():
    with pytest.warns(TaggerWarning, match="silent"):
        patches, _ = frontend.waveform_to_patches(np.zeros(SR), SR)
    np.testing.assert_allclose(patches, np.log(params.LOG_OFFSET), rtol=1e-6)


def test_three_seconds_at_44k1_gives_three_patches():
    y = sine(440.0, 3.0, sr=44100)
    patches, times = frontend.waveform_to_patches(y, 44100)
    assert patches.shape == (3, 96, 64)
    np.testing.assert_allclose(times, [0.0, 0.96, 1.92])


@pytest.mark.parametrize(
    "seconds,hop,expected", [(0.96, 0.96, 0), (0.975, 0.96, 1), (1.935, 0.96, 2), (3.0, 0.48, 5), (30.0, 0.96, 31)]
)
def test_n_patches(seconds, hop, expected):
    n = int(round(seconds * SR))
    assert frontend.n_patches(n, hop_seconds=hop) == expected


def test_mel_matrix_properties():
    w = frontend.mel_matrix()
    assert w.shape == (257, 64)
    assert np.all(w[0] == 0.0)
    assert np.all(w >= 0) and w.max() <= 1.0
    assert not w.flags.writeable


@pytest.mark.parametrize("blocks", [[1], [100, 15600, 20000], [15359, 1, 15360, 7], [4000] * 30])
@pytest.mark.parametrize("hop_seconds", [0.96, 0.48, 2.0])
def test_streaming_equals_whole(blocks, hop_seconds):
    y = np.random.default_rng(1).standard_normal(60000).astype(np.float32) * 0.1
    whole = frontend.Patcher(hop_seconds=hop_seconds)
    p_all, t_all = whole.feed(y)
    stream = frontend.Patcher(hop_seconds=hop_seconds)
    parts, times, start = [], [], 0
    sizes = blocks * (len(y) // sum(blocks) + 1)
    for size in sizes:
        if start >= len(y):
            break
        p, t = stream.feed(y[start : start + size])
        parts.append(p)
        times.append(t)
        start += size
    np.testing.assert_array_equal(np.concatenate(parts), p_all)
    np.testing.assert_allclose(np.concatenate(times), t_all)


def test_short_clip_padded_with_warning():
    y = sine(440.0, 0.5)
    with pytest.warns(TaggerWarning, match="zero-padded"):
        patches, times = frontend.waveform_to_patches(y, SR)
    assert patches.shape == (1, 96, 64)
    padded = np.zeros(params.PATCH_SAMPLES, np.float32)
    padded[: len(y)] = y
    np.testing.assert_allclose(patches[0], reference_examples(padded)[0], atol=2e-5)
    assert times.tolist() == [0.0]


def test_short_clip_skip_policy_raises():
    with pytest.raises(AudioError, match="shorter than"):
        frontend.waveform_to_patches(sine(440.0, 0.5), SR, short_policy="skip")


def test_empty_array_raises():
    with pytest.raises(AudioError, match="no audio samples"):
        frontend.waveform_to_patches(np.zeros(0, np.float32), SR)


@pytest.mark.parametrize("kwargs", [{"hop_seconds": 0.0}, {"hop_seconds": 0.123}, {"short_policy": "drop"}])
def test_bad_parameters(kwargs):
    with pytest.raises(ParameterError):
        frontend.Patcher(**kwargs)
