import collections

import numpy as np
import pescador
import pytest

from tagger.exceptions import ParameterError
from tagger.training.streams import TrackMux, track_weights


def constant(i, n=None):
    """Generator function: yields ``i`` forever (or ``n`` times)."""
    k = 0
    while n is None or k < n:
        yield i
        k += 1


def shares(mux, n):
    counts = collections.Counter(mux.iterate(max_iter=n))
    return np.array([counts[i] for i in range(len(mux.streamers))]) / n


def test_streams_windows_masks_and_determinism():
    from tagger.training.streams import iter_padded_batches, training_stream

    rng = np.random.default_rng(0)
    embs = [rng.standard_normal((n, 128)).astype(np.float32) for n in (3, 10, 25)]
    y = np.eye(3, dtype=np.float32)

    def take(seed):
        s = training_stream(embs, y, window=8, batch_size=16, n_active=2, rate=2.0, seed=seed)
        return [next(s) for _ in range(5)]

    a, b, c = take(1), take(1), take(2)
    for p, q in zip(a, b):
        for k in ("x", "mask", "y"):
            np.testing.assert_array_equal(p[k], q[k])
    assert any(not np.array_equal(p["x"], q["x"]) for p, q in zip(a, c))
    batch = a[0]
    assert batch["x"].shape == (16, 8, 128) and batch["mask"].shape == (16, 8) and batch["y"].shape == (16, 3)
    short = batch["y"][:, 0] == 1  # the 3-patch track: padded and masked, not dropped
    seen_short = np.concatenate([p["y"][:, 0] for p in a]).sum()
    assert seen_short > 0
    for p in a:
        rows = p["y"][:, 0] == 1
        assert np.all(p["mask"][rows].sum(1) == 3)
        assert np.all(p["x"][rows][:, 3:] == 0)
    assert np.all(batch["mask"][~short].sum(1) == 8)
    order = [x for x, _ in iter_padded_batches(embs, 2)]
    assert [len(x) for x in order] == [2, 1] and order[0].shape == (2, 10, 128)


def test_trackmux_is_a_seeded_mux_pescador_can_buffer():
    streamers = [pescador.Streamer(constant, i) for i in range(20)]
    mux = TrackMux(streamers, n_active=4, rate=3.0, random_state=5)
    assert not isinstance(mux, pescador.StochasticMux)  # samples like one; its weights mean something else
    batch = next(pescador.buffer_stream(({"i": np.array([i])} for i in mux), 7, axis=0))
    a = list(mux.iterate(max_iter=500))
    assert batch["i"].tolist() == a[:7]
    assert a == list(mux.iterate(max_iter=500))  # every iterate() replays the seed
    assert a != list(TrackMux(streamers, n_active=4, rate=3.0, random_state=6).iterate(max_iter=500))
    assert len(a) == 500 and set(a) == set(range(20))


@pytest.mark.parametrize("weights", [[0.7, 0.1, 0.1, 0.1], [1, 2, 3, 4], [0.25] * 4])
@pytest.mark.parametrize("n_active", [1, 2, 8])
def test_trackmux_long_run_shares_follow_weights(weights, n_active):
    streamers = [pescador.Streamer(constant, i) for i in range(4)]
    expected = np.asarray(weights, float) / np.sum(weights)
    got = shares(TrackMux(streamers, n_active=n_active, rate=4.0, weights=weights, random_state=0), 200_000)
    np.testing.assert_allclose(got, expected, atol=0.015)


@pytest.mark.parametrize("rate", [1.0, 4.0, 16.0])
def test_trackmux_samples_per_activation_is_rate(rate):
    activations = []

    def counted(i):
        activations.append(i)
        yield from constant(i)

    streamers = [pescador.Streamer(counted, i) for i in range(50)]
    n = 100_000
    list(TrackMux(streamers, n_active=8, rate=rate, random_state=1).iterate(max_iter=n))
    # the 8 activations still open at the end have not been used up
    assert n / (len(activations) - 8) == pytest.approx(rate, rel=0.05)


def test_trackmux_replaces_exhausted_streamers():
    streamers = [pescador.Streamer(constant, i, n=2) for i in range(5)]
    got = list(TrackMux(streamers, n_active=3, rate=10.0, random_state=0).iterate(max_iter=1000))
    assert len(got) == 1000 and set(got) == set(range(5))


def test_trackmux_refuses_iterables_and_endless_activations():
    with pytest.raises(ParameterError, match="streamer 0 wraps list"):
        TrackMux([pescador.Streamer([1, 2, 3])], n_active=1, rate=2.0)
    with pytest.raises(ParameterError, match="streamer 0 wraps list"):  # taken as pescador's muxes take it
        TrackMux([[1, 2, 3]], n_active=1, rate=2.0)
    with pytest.raises(ParameterError, match="rate=None"):
        TrackMux([pescador.Streamer(constant, 0)], n_active=1, rate=None)
    with pytest.raises(ParameterError, match="weights must be 2"):
        TrackMux([pescador.Streamer(constant, i) for i in range(2)], n_active=1, rate=2.0, weights=[1, -1])
    with pytest.raises(ParameterError, match="n_active=0"):
        TrackMux([pescador.Streamer(constant, 0)], n_active=0, rate=2.0)


def test_windows_vary_across_activations():
    """A long track's windows start anywhere on every activation (not the same starts each time)."""
    from tagger.training.streams import training_stream

    emb = [np.arange(40, dtype=np.float32)[:, None].repeat(128, 1)]
    y = np.ones((1, 1), np.float32)
    s = training_stream(emb, y, window=8, batch_size=16, n_active=1, rate=1.0, seed=0)
    starts = np.concatenate([next(s)["x"][:, 0, 0] for _ in range(20)])  # 320 activations of one window each
    assert set(starts.astype(int)) == set(range(33))


def test_inverse_frequency_balances_labels():
    """Label-balanced sampling: a tag on 1 track in 100 is drawn about as often as one on the other 99."""
    from tagger.training.streams import training_stream

    rng = np.random.default_rng(0)
    emb = [rng.standard_normal((10, 128)).astype(np.float32) for _ in range(100)]
    y = np.zeros((100, 2), np.float32)
    y[0, 0] = 1
    y[1:, 1] = 1
    assert track_weights(y, "inverse_frequency")[0] == pytest.approx(0.5)
    for weighting, rare_share in (
        ("uniform", 0.01),
        ("inverse_sqrt_frequency", 1 / (1 + 99**0.5)),
        ("inverse_frequency", 0.5),
    ):
        s = training_stream(emb, y, window=10, batch_size=100, n_active=16, rate=4.0, seed=0, weighting=weighting)
        drawn = np.concatenate([next(s)["y"] for _ in range(400)])
        assert drawn[:, 0].mean() == pytest.approx(rare_share, rel=0.2), weighting


def test_mixup_is_a_convex_combination_of_two_samples():
    from tagger.training.streams import mixup

    n = 32
    batch = {
        "x": np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 4, 128), np.float32),
        "mask": np.ones((n, 4), np.float32),
        "y": np.eye(n, dtype=np.float32),
    }
    batch["mask"][0, 2:] = 0
    out = next(mixup(iter([batch]), 0.4, seed=0))
    again = next(mixup(iter([batch]), 0.4, seed=0))
    for k in ("x", "mask", "y"):
        np.testing.assert_array_equal(out[k], again[k])
    np.testing.assert_allclose(out["y"].sum(1), 1.0, rtol=1e-6)
    assert np.all((out["y"] > 0).sum(1) <= 2)
    # each row's value is the label-weighted mix of the two source rows' values
    np.testing.assert_allclose(out["x"][:, 0, 0], out["y"] @ np.arange(n), rtol=1e-5, atol=1e-5)
    assert np.all(out["mask"] >= batch["mask"])
    assert not np.array_equal(out["y"], batch["y"])
    same = next(mixup(iter([batch]), 0.0, seed=0))
    assert same is batch
    with pytest.raises(ParameterError, match="alpha=-1"):
        next(mixup(iter([batch]), -1, seed=0))
