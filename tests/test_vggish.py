import hashlib

import numpy as np
import pytest

from tagger.embedding.vggish import network as vggish
from tagger.embedding.vggish import params, postprocess
from tagger.exceptions import DataError
from tagger.testing import numpy_forward, random_weights, write_checkpoint


@pytest.fixture(scope="module")
def patches():
    rng = np.random.default_rng(3)
    return (rng.standard_normal((3, 96, 64)) * 2.0 - 3.0).astype(np.float32)


def test_architecture_shapes():
    model = vggish.build_vggish()
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes["pool1"] == (48, 32, 64)
    assert shapes["pool4"] == (6, 4, 512)
    assert shapes["flatten"] == (12288,)
    assert shapes["fc2"] == (128,)
    assert model.get_layer("fc2").activation.__name__ == "linear"
    assert model.count_params() == sum(int(np.prod(s)) for s in vggish.official_names().values())


@pytest.mark.parametrize("layout", ["v1/vggish_model.ckpt", "v2/vggish_model.ckpt", "savedmodel"])
def test_loaders_match_numpy_forward(weights_dir, fixture_weights, patches, layout):
    model, ident = vggish.load_vggish(str(weights_dir / layout))
    assert ident == vggish.weights_id(fixture_weights)
    out = model.predict(patches, verbose=0)
    ref = numpy_forward(fixture_weights, patches)
    assert np.abs(ref).max() > 0.1  # the fixture weights give non-trivial outputs
    assert np.abs(out - ref).max() < 1e-4


def test_hub_handle_loads_from_tfhub_cache(weights_dir, fixture_weights, monkeypatch, tmp_path):
    """A SavedModel in $TFHUB_CACHE_DIR/<sha1 of the handle>/ is what hub.load finds offline."""
    import shutil

    handle = params.VGGISH_HUB_HANDLE
    shutil.copytree(weights_dir / "savedmodel", tmp_path / hashlib.sha1(handle.encode()).hexdigest())
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(params.WEIGHTS_ENV, raising=False)
    weights = vggish.read_weights()  # default source: the hub handle
    assert vggish.weights_id(weights) == vggish.weights_id(fixture_weights)


def test_env_variable_points_at_weights(monkeypatch, ckpt_path, fixture_weights):
    monkeypatch.setenv(params.WEIGHTS_ENV, ckpt_path)
    assert vggish.weights_id(vggish.read_weights()) == vggish.weights_id(fixture_weights)


def test_missing_weights_message(tmp_path, monkeypatch):
    with pytest.raises(DataError) as info:
        vggish.read_weights(str(tmp_path / "nowhere.ckpt"))
    text = str(info.value)
    assert "nowhere.ckpt" in text and params.WEIGHTS_ENV in text and "--weights" in text


def test_offline_hub_gives_the_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    with pytest.raises(DataError, match=params.WEIGHTS_ENV):
        vggish.read_weights("https://tfhub.invalid/google/vggish/1")


def test_incomplete_checkpoint_names_the_variable(tmp_path):
    weights = random_weights(1)
    del weights["vggish/conv3/conv3_2/biases"]
    weights["vggish/fc2/weights"] = weights["vggish/fc2/weights"][:, :64]
    path = write_checkpoint(weights, str(tmp_path / "bad.ckpt"), version=2)
    with pytest.raises(DataError) as info:
        vggish.read_weights(path)
    assert "vggish/conv3/conv3_2/biases missing" in str(info.value)
    assert "vggish/fc2/weights has shape (4096, 64)" in str(info.value)


def test_folder_without_savedmodel(tmp_path):
    with pytest.raises(DataError, match="saved_model.pb"):
        vggish.read_weights(str(tmp_path))


def test_postprocess_against_official_parameters(pca_params):
    post = postprocess.Postprocessor(pca_params)
    with np.load(pca_params) as npz:
        means, eigen = npz["pca_means"], npz["pca_eigen_vectors"]
    rng = np.random.default_rng(0)
    raw = means + rng.standard_normal((50, 128)) * 0.05
    expected = np.clip(eigen @ (raw - means).T, -2, 2).T
    q = post(raw)
    assert q.dtype == np.uint8 and q.shape == (50, 128)
    np.testing.assert_array_equal(q, ((expected + 2) * 255 / 4).astype(np.uint8))
    # dequantise: x / 255 * 4 - 2, within one quantisation step of the clipped PCA output
    assert np.abs(postprocess.dequantize(q) - expected).max() <= 4 / 255 + 1e-6
    # round trip through the inverse: re-quantising the reconstruction gives the same codes (+-1)
    assert np.abs(post(post.invert(q)).astype(int) - q.astype(int)).max() <= 1


def test_round_trip_on_released_audioset_codes(shared, pca_params):
    """Released AudioSet frames are official postprocessor output: invert + re-quantise reproduces them."""
    import tensorflow as tf

    record = next(iter(sorted((shared / "data/audioset/bal_train").glob("*.tfrecord"))))
    raw = next(iter(tf.data.TFRecordDataset(str(record)))).numpy()
    example = tf.train.SequenceExample.FromString(raw)
    frames = example.feature_lists.feature_list["audio_embedding"].feature
    codes = np.stack([np.frombuffer(f.bytes_list.value[0], np.uint8) for f in frames])
    post = postprocess.Postprocessor(pca_params)
    inner = (codes > 0) & (codes < 255)  # clipped codes cannot be inverted exactly
    again = post(post.invert(codes))
    assert np.abs(again.astype(int) - codes.astype(int))[inner].max() <= 1


def test_pca_file_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(params.PCA_PARAMS_ENV, raising=False)
    with pytest.raises(DataError, match="vggish_pca_params"):
        postprocess.Postprocessor()
    bad = tmp_path / "bad.npz"
    np.savez(bad, pca_means=np.zeros(5))
    with pytest.raises(DataError, match="bad.npz"):
        postprocess.Postprocessor(bad)
