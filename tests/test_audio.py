import numpy as np
import pytest
import soundfile as sf

from tagger.embedding import audio
from tagger.embedding.vggish import frontend, params
from tagger.exceptions import AudioError, ParameterError


@pytest.mark.parametrize(
    "name,sr,channels,fmt",
    [
        ("mono16k.wav", 16000, 1, {}),
        ("stereo48k.flac", 48000, 2, {}),
        ("mono8k.wav", 8000, 1, {}),
        ("stereo44k.ogg", 44100, 2, {}),
        ("mono22k.mp3", 22050, 1, {}),
        ("surround.wav", 32000, 6, {}),
        ("pcm16.au", 11025, 1, {"subtype": "PCM_16"}),
    ],
)
def test_formats_rates_channels(make_audio, name, sr, channels, fmt):
    path = make_audio(name, 2.0, sr=sr, channels=channels, **fmt)
    y = audio.load(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 2 * params.SAMPLE_RATE) <= 0.05 * params.SAMPLE_RATE  # mp3 adds codec delay
    assert np.max(np.abs(y)) <= 1.0
    assert np.max(np.abs(y)) > 0.2


def test_resampling_keeps_the_tone(make_audio):
    path = make_audio("tone.wav", 1.0, sr=44100, freq=1000.0)
    y = audio.load(path)
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * params.SAMPLE_RATE / len(y) - 1000.0) < 3.0


def test_stereo_is_mean_of_channels(tmp_path):
    left = np.linspace(-0.5, 0.5, 16000, dtype=np.float32)
    right = np.zeros(16000, np.float32)
    sf.write(str(tmp_path / "s.wav"), np.stack([left, right], 1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(audio.load(tmp_path / "s.wav"), left / 2, atol=1e-7)


def test_blocks_concatenate_to_load(make_audio):
    path = make_audio("long.flac", 7.3, sr=44100, channels=2)
    blocks = list(audio.iter_blocks(path, block_seconds=1.1))
    assert len(blocks) > 5
    np.testing.assert_array_equal(np.concatenate(blocks), audio.load(path))


def test_array_layouts_and_integers():
    y = (np.random.default_rng(0).standard_normal((32000, 2)) * 0.1).astype(np.float32)
    a = audio.to_mono(y, 16000)
    b = audio.to_mono(y.T, 16000)
    np.testing.assert_array_equal(a, b)
    pcm = (y * 32767).astype(np.int16)
    np.testing.assert_allclose(audio.to_mono(pcm, 16000), a, atol=1e-4)


@pytest.mark.parametrize("bad", ["empty.wav", "notes.wav", "cut_header.wav"])
def test_bad_files_raise_audio_error_naming_the_file(bad_files, bad):
    with pytest.raises(AudioError) as info:
        audio.load(bad_files / bad)
    assert bad in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        audio.load(tmp_path / "nope.wav")


def test_zero_frame_wav(tmp_path):
    sf.write(str(tmp_path / "zero.wav"), np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        audio.load(tmp_path / "zero.wav")


def test_truncated_data_decodes_the_intact_part(make_audio, tmp_path):
    whole = make_audio("whole.wav", 4.0)
    data = whole.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    y = audio.load(cut)
    assert abs(len(y) - 2 * params.SAMPLE_RATE) < 100
    np.testing.assert_array_equal(y, audio.load(whole)[: len(y)])


def test_nan_array_rejected():
    with pytest.raises(AudioError, match="NaN"):
        audio.to_mono(np.array([0.0, np.nan, 0.1]), 16000)


@pytest.mark.parametrize("sr", [0, -5, 16000.5])
def test_bad_rate(sr):
    with pytest.raises(ParameterError):
        audio.to_mono(np.zeros(100), sr)


def test_real_gtzan_and_mtt_decode(gtzan_files, mtt_clip):
    for path in gtzan_files:
        sr, channels, duration = audio.info(path)
        assert (sr, channels) == (22050, 1)
        y = audio.load(path)
        assert abs(len(y) / params.SAMPLE_RATE - duration) < 1e-3, path
        assert frontend.n_patches(len(y)) == 31
    y = audio.load(mtt_clip)
    assert abs(len(y) / params.SAMPLE_RATE - 29.1) < 0.3
