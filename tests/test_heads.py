import numpy as np
import pytest

from tagger.exceptions import ParameterError

#: the heads over embedding rows that pool over time, each tested alike
POOLED = ["dense", "autopool", "attention", "feature_attention", "multilevel_attention"]


def autopool_reference(x, alpha, mask):
    """NumPy AutoPool: sum_t x * softmax_t(alpha * x) over unmasked steps."""
    z = alpha[None, None, :] * x
    z = np.where(mask[..., None] > 0, z, -np.inf)
    w = np.exp(z - z.max(axis=1, keepdims=True))
    w = w / w.sum(axis=1, keepdims=True)
    return (x * w).sum(axis=1)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (4, 7, 5)).astype(np.float32)
    mask = np.ones((4, 7), np.float32)
    mask[1, 4:] = 0
    mask[2, 1:] = 0
    return x, mask


@pytest.mark.parametrize("alpha", [0.0, 1.0, -2.0, 3.5])
def test_autopool_matches_numpy(batch, alpha):
    from tagger.training.layers import AutoPool1D

    x, mask = batch
    layer = AutoPool1D(alpha_init=alpha)
    out = np.asarray(layer(x, mask=mask))
    np.testing.assert_allclose(out, autopool_reference(x, np.full(5, alpha), mask), rtol=1e-5, atol=1e-6)


def test_autopool_alpha_zero_is_masked_mean_and_large_alpha_is_max(batch):
    from tagger.training.layers import AutoPool1D

    x, mask = batch
    mean = (x * mask[..., None]).sum(1) / mask.sum(1)[:, None]
    np.testing.assert_allclose(np.asarray(AutoPool1D(alpha_init=0.0)(x, mask=mask)), mean, rtol=1e-5)
    big = np.asarray(AutoPool1D(alpha_init=200.0)(x, mask=mask))
    np.testing.assert_allclose(big, np.where(mask[..., None] > 0, x, -np.inf).max(1), atol=1e-3)


def test_masked_patches_have_no_influence(batch):
    from tagger.training.layers import AttentionPool1D, AutoPool1D, MaskedMean

    x, mask = batch
    noisy = x.copy()
    noisy[mask == 0] = 1e3
    for layer in (AutoPool1D(alpha_init=1.5), MaskedMean()):
        np.testing.assert_allclose(np.asarray(layer(x, mask=mask)), np.asarray(layer(noisy, mask=mask)), rtol=1e-6)
    att = AttentionPool1D()
    np.testing.assert_allclose(
        np.asarray(att([x, x], mask=mask)), np.asarray(att([noisy, noisy], mask=mask)), rtol=1e-6
    )


def test_autopool_config_round_trip(tmp_path):
    import keras

    from tagger.training.heads import build_head

    model = build_head("autopool", 6, "multilabel", hidden=8, n_layers=1, alpha_init=0.7)
    assert model.get_layer("output").get_config()["alpha_init"] == 0.7
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    x = np.random.default_rng(1).standard_normal((2, 5, 128)).astype(np.float32)
    m = np.ones((2, 5), np.float32)
    np.testing.assert_allclose(np.asarray(model((x, m))), np.asarray(again((x, m))), rtol=1e-6)


@pytest.mark.parametrize("name", POOLED)
@pytest.mark.parametrize("task", ["multilabel", "singlelabel"])
def test_heads_shapes_and_outputs(name, task):
    from tagger.training.heads import build_head

    model = build_head(name, 9, task, hidden=16, n_layers=1, dropout=0.1)
    x = np.random.default_rng(2).standard_normal((3, 6, 128)).astype(np.float32)
    mask = np.ones((3, 6), np.float32)
    mask[0, 2:] = 0
    out = np.asarray(model((x, mask), training=False))
    assert out.shape == (3, 9)
    assert np.all((out >= 0) & (out <= 1))
    if task == "singlelabel":
        np.testing.assert_allclose(out.sum(1), 1.0, rtol=1e-5)
    # padding beyond the mask changes nothing
    x2 = x.copy()
    x2[0, 2:] = 99.0
    np.testing.assert_allclose(np.asarray(model((x2, mask), training=False)), out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", POOLED)
def test_standardize_is_the_training_scaler_and_survives_saving(name, tmp_path):
    import keras

    from tagger.training.heads import build_head, input_stats

    rng = np.random.default_rng(4)
    embs = [rng.normal(3.0, 2.0, (n, 128)).astype(np.float32) for n in (4, 7, 9)]
    mean, variance = input_stats(embs)
    np.testing.assert_allclose(mean, np.concatenate(embs).mean(0), rtol=1e-6)
    np.testing.assert_allclose(variance, np.concatenate(embs).var(0), rtol=1e-5)
    settings = dict(hidden=8, n_layers=1, dropout=0.0)
    scaled = build_head(name, 5, "multilabel", standardize=True, input_stats=(mean, variance), **settings)
    plain = build_head(name, 5, "multilabel", **settings)
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(scaled.get_layer(layer.name).get_weights())
    x = embs[2][None]
    m = np.ones((1, 9), np.float32)
    z = ((x - np.asarray(mean)) / np.sqrt(variance)).astype(np.float32)
    out = np.asarray(scaled((x, m), training=False))
    np.testing.assert_allclose(out, np.asarray(plain((z, m), training=False)), rtol=1e-4, atol=1e-6)
    assert not np.allclose(out, np.asarray(plain((x, m), training=False)), atol=1e-3)
    scaled.save(tmp_path / "h.keras")
    again = keras.saving.load_model(tmp_path / "h.keras")
    np.testing.assert_allclose(np.asarray(again((x, m), training=False)), out, rtol=1e-6)
    with pytest.raises(ParameterError, match="input_stats has 3 means"):
        build_head(name, 5, "multilabel", standardize=True, input_stats=([0.0] * 3, [1.0] * 3), **settings)


@pytest.mark.backends
@pytest.mark.parametrize("name", POOLED)
def test_ensemble_trains_each_member_on_its_slice_and_averages_to_predict(name, tmp_path):
    import keras

    from tagger.training.heads import build_head

    def arr(tensor):  # a backend's tensor as NumPy (a PyTorch one may require grad)
        return np.asarray(keras.ops.convert_to_numpy(tensor))

    model = build_head(name, 4, "singlelabel", members=3, hidden=8, n_layers=1, dropout=0.0)
    heads = model.get_layer("ensemble").members
    assert [h.name for h in heads] == [f"{name}_0", f"{name}_1", f"{name}_2"]
    x = np.random.default_rng(6).standard_normal((7, 5, 128)).astype(np.float32)
    m = np.ones((7, 5), np.float32)
    m[3, 2:] = 0
    outs = [arr(h((x, m), training=False)) for h in heads]
    assert not np.allclose(outs[0], outs[1])  # independently initialised
    np.testing.assert_allclose(arr(model((x, m), training=False)), np.mean(outs, 0), rtol=1e-5)
    # training: rows 0-1 from member 0, 2-3 from member 1, 4-6 (the remainder) from member 2
    train_out = arr(model((x, m), training=True))
    for h, (lo, hi) in zip(heads, [(0, 2), (2, 4), (4, 7)]):
        np.testing.assert_allclose(train_out[lo:hi], arr(h((x[lo:hi], m[lo:hi]), training=True)), rtol=1e-5, atol=1e-6)
    # the loss of member 1's rows reaches member 1 only: one SGD step on those rows alone (any backend)
    before = [arr(h.trainable_variables[0]) for h in heads]
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy")
    rows = np.array([0, 0, 1, 1, 0, 0, 0], np.float32)
    model.train_on_batch((x, m), np.eye(4, dtype=np.float32)[[0] * 7], sample_weight=rows)
    changed = [not np.array_equal(arr(h.trainable_variables[0]), b) for h, b in zip(heads, before)]
    assert changed == [False, True, False]
    model.save(tmp_path / "e.keras")
    again = keras.saving.load_model(tmp_path / "e.keras")
    np.testing.assert_allclose(arr(again((x, m), training=False)), arr(model((x, m), training=False)), rtol=1e-6)
    with pytest.raises(ParameterError, match="members=0"):
        build_head(name, 4, "singlelabel", members=0)


def test_unknown_head_lists_valid_names():
    from tagger.training.heads import HEADS, build_head

    assert {*POOLED, "mlp", "cnn4", "cnn_gru", "parallel_cnn", "cnn_lstm"} <= set(HEADS)
    with pytest.raises(ParameterError, match=", ".join(sorted(HEADS))):
        build_head("transformer", 3, "multilabel")
    with pytest.raises(ParameterError, match="bad settings"):
        build_head("dense", 3, "multilabel", depth=4)


def test_the_attention_heads_follow_their_papers_structure():
    """feature_attention pools ``hidden`` features over time (weights: a sigmoid normalised by its sum) before the
    classifier; multilevel_attention pools predictions at the last ``levels`` blocks, each with its own attention."""
    import keras

    from tagger.training.heads import build_head
    from tagger.training.layers import AttentionPool1D

    feature = build_head("feature_attention", 7, "multilabel", hidden=12, n_layers=2)
    pool = feature.get_layer("feature_pool")
    assert pool.normalization == "sum" and tuple(pool.output.shape) == (None, 12)
    values, attention = feature.get_layer("feature_values"), feature.get_layer("feature_attention")
    assert attention.get_config()["activation"] == "sigmoid" and values.get_config()["activation"] == "linear"
    # the weights: attention / its sum over the real steps, against a NumPy oracle
    rng = np.random.default_rng(3)
    v, a = rng.standard_normal((2, 4, 3)).astype(np.float32), rng.uniform(0, 1, (2, 4, 3)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], np.float32)
    got = np.asarray(AttentionPool1D(normalization="sum")([v, a], mask=mask))
    w = a * mask[..., None]
    np.testing.assert_allclose(got, (v * w / w.sum(1, keepdims=True)).sum(1), rtol=1e-5)
    multi = build_head("multilevel_attention", 7, "singlelabel", hidden=12, n_layers=3, levels=2)
    pools = [layer for layer in multi.layers if isinstance(layer, AttentionPool1D)]
    assert [p.name for p in pools] == ["level0_attention", "level1_attention"]
    assert tuple(multi.get_layer("levels").output.shape) == (None, 14)
    sources = {p.name: p.input[0]._keras_history[0].input._keras_history[0].name for p in pools}
    assert sources == {"level0_attention": "patch_dropout1", "level1_attention": "patch_dropout2"}
    with pytest.raises(ParameterError, match="levels=3 must be an integer from 1 to n_layers=2"):
        build_head("multilevel_attention", 7, "multilabel", n_layers=2, levels=3)
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pool)).normalization == "sum"
