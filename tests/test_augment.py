"""Augmentation: each transform measured on signals whose properties are known."""

import numpy as np
import pandas as pd
import pytest

from tagger.embedding.augment import DEFAULTS, augment, augment_seed, augmented_rows, check_settings
from tagger.exceptions import ParameterError

SR = 16000


def _only(name, **ranges):
    """Settings with every transform off but ``name``, always applied with the given (fixed) range."""
    settings = {k: {"p": 0.0} for k in DEFAULTS}
    settings[name] = {"p": 1.0, **ranges}
    return settings


def _sine(freq=440.0, seconds=3.0, amplitude=0.5):
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _frequency(y):
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    k = int(np.argmax(spectrum))
    a, b, c = np.log(spectrum[k - 1 : k + 2])  # parabolic interpolation of the peak
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / len(y)


def test_noise_at_the_stated_snr():
    y = _sine()
    out = augment(y, SR, seed=1, settings=_only("noise", min_snr_db=20.0, max_snr_db=20.0))
    snr = 10 * np.log10(np.mean(y**2) / np.mean((out - y) ** 2))
    assert snr == pytest.approx(20.0, abs=0.3)


@pytest.mark.parametrize("fraction", [0.1, -0.25])
def test_shift_wraps_by_the_stated_amount(fraction):
    y = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    out = augment(y, SR, seed=1, settings=_only("shift", min_fraction=fraction, max_fraction=fraction))
    np.testing.assert_array_equal(out, np.roll(y, int(round(fraction * len(y)))))


@pytest.mark.parametrize(
    "name, ranges, freq_ratio, duration_ratio",
    [
        ("speed", {"min_rate": 1.25, "max_rate": 1.25}, 1.0, 1 / 1.25),
        ("speed", {"min_rate": 0.8, "max_rate": 0.8}, 1.0, 1 / 0.8),
        ("pitch", {"min_semitones": 2.0, "max_semitones": 2.0}, 2 ** (2 / 12), 1.0),
        ("pitch", {"min_semitones": -2.0, "max_semitones": -2.0}, 2 ** (-2 / 12), 1.0),
        ("pitch_speed", {"min_factor": 1.1, "max_factor": 1.1}, 1.1, 1 / 1.1),
        ("pitch_speed", {"min_factor": 0.9, "max_factor": 0.9}, 0.9, 1 / 0.9),
    ],
)
def test_speed_and_pitch_changes_measured_on_a_sine(name, ranges, freq_ratio, duration_ratio):
    y = _sine(440.0)
    out = augment(y, SR, seed=3, settings=_only(name, **ranges))
    assert len(out) / len(y) == pytest.approx(duration_ratio, rel=0.02)
    assert _frequency(out) / 440.0 == pytest.approx(freq_ratio, rel=0.02)


def test_gain_is_an_exact_multiplication():
    y = _sine(amplitude=0.1)
    out = augment(y, SR, seed=0, settings=_only("gain", min_gain_db=6.0, max_gain_db=6.0))
    np.testing.assert_allclose(out, y * 10 ** (6 / 20), rtol=1e-6, atol=1e-7)


def test_percussive_part_keeps_clicks_and_drops_the_sine():
    y = _sine(440.0, amplitude=0.3)
    clicks = np.zeros_like(y)
    positions = np.arange(SR // 4, len(y) - 100, SR // 2)
    clicks[positions] = 0.9
    out = augment(y + clicks, SR, seed=0, settings=_only("percussive"))
    near = np.abs(out[positions]).mean()
    assert near > 0.3  # the clicks survive
    sine_before, sine_after = np.abs(np.fft.rfft(y + clicks)), np.abs(np.fft.rfft(out))
    k = int(round(440 * len(y) / SR))
    assert sine_after[k] < 0.1 * sine_before[k]  # the steady tone is mostly gone


def test_same_seed_same_copy_and_defaults_vary():
    y = np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32) * 0.1
    seeds = [augment_seed("blues.00000", k) for k in (1, 2)]
    assert seeds[0] != seeds[1] and augment_seed("blues.00000", 1) == seeds[0]
    a = augment(y, SR, seed=seeds[0], settings={k: {"p": 1.0} for k in ("noise", "gain")})
    b = augment(y, SR, seed=seeds[0], settings={k: {"p": 1.0} for k in ("noise", "gain")})
    c = augment(y, SR, seed=seeds[1], settings={k: {"p": 1.0} for k in ("noise", "gain")})
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    state = np.random.get_state()[1].copy()
    augment(y, SR, seed=5)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # the caller's generator is left alone


@pytest.mark.parametrize(
    "settings, key",
    [
        ({"nois": {"p": 1}}, "nois"),
        ({"noise": {"p": 1.5}}, "noise.p"),
        ({"gain": {"min_gain_db": 9, "max_gain_db": 1}}, "gain.min_gain_db"),
        ({"speed": {"rate": 1}}, "speed.rate"),
        ({"pitch": {"p": "x"}}, "pitch.p"),
    ],
)
def test_bad_settings_name_the_key(settings, key):
    with pytest.raises(ParameterError, match=key.replace(".", r"\.")):
        check_settings(settings)


def test_copies_only_of_training_tracks_in_their_fold():
    df = pd.DataFrame(
        {
            "track_id": ["a", "b", "c"],
            "path": ["a.wav", "b.wav", "c.wav"],
            "split": ["train", "valid", "test"],
            "labels": ["x", "y", "z"],
            "duration": [1.0, 1.0, 1.0],
            "fold": [3, 1, 2],
        }
    )
    rows, items = augmented_rows(df, 2)
    assert rows["track_id"].tolist() == ["a@aug1", "a@aug2"] and set(rows["split"]) == {"train"}
    assert rows["fold"].tolist() == [3, 3] and rows["augmented_from"].tolist() == ["a", "a"]
    assert [i[0].copy for i in items] == [1, 2] and items[0][0].path == "a.wav"
