"""Training and validation streams with pescador 3.

Training: one :class:`pescador.Streamer` per track yields windows of
``window`` consecutive patches (random start) with the track's label vector
and a mask; a seeded :class:`pescador.StochasticMux` mixes ``n_active``
tracks at a time; :func:`pescador.buffer_stream` makes batches. Short tracks
are zero-padded and masked, never dropped. Validation is deterministic:
every track once, whole, in order.
"""

import numpy as np
import pescador

from .exceptions import ParameterError

__all__ = ["track_windows", "training_stream", "keras_batches", "pad_tracks", "iter_padded_batches"]


def _window(emb, start, window):
    """One window of ``window`` patches from ``start``, zero-padded, with its mask."""
    x = np.zeros((window, emb.shape[1]), np.float32)
    m = np.zeros(window, np.float32)
    piece = emb[start : start + window]
    x[: len(piece)] = piece
    m[: len(piece)] = 1.0
    return x, m


def track_windows(emb, y, *, window, seed, draw=1):
    """Generator function: endless random windows of one track, ``draw`` at a time.

    Yields
    ------
    dict
        ``x`` (draw, window, 128) float32, ``mask`` (draw, window) float32,
        ``y`` (draw, n_outputs) float32: ``draw`` windows at independent random starts.
    """
    rng = np.random.default_rng(seed)
    n = len(emb)
    if n <= window:  # the whole (padded) track is the only window: build it once
        x, m = _window(emb, 0, window)
        block = {"x": np.repeat(x[None], draw, 0), "mask": np.repeat(m[None], draw, 0), "y": np.repeat(y[None], draw, 0)}
        while True:
            yield block
    windows = np.lib.stride_tricks.sliding_window_view(emb, window, axis=0).transpose(0, 2, 1)  # (n - window + 1, window, 128)
    ones = np.ones((draw, window), np.float32)
    ys = np.repeat(y[None], draw, 0)
    while True:
        starts = rng.integers(0, n - window + 1, size=draw)
        yield {"x": windows[starts], "mask": ones, "y": ys}


WEIGHTINGS = ("uniform", "inverse_frequency")


def track_weights(labels, weighting="uniform"):
    """Sampling weight per track.

    ``uniform``: every track alike. ``inverse_frequency``: a track weighs the
    mean of ``1 / count`` over its labels, so rare tags are drawn about as
    often as common ones (label-balanced sampling).

    Returns
    -------
    np.ndarray, shape (n_tracks,), summing to 1
    """
    if weighting not in WEIGHTINGS:
        raise ParameterError(f"weighting={weighting!r} must be one of {WEIGHTINGS}")
    labels = np.asarray(labels, dtype=np.float64)
    if weighting == "uniform":
        w = np.ones(len(labels))
    else:
        inverse = 1.0 / np.maximum(labels.sum(0), 1.0)
        w = (labels * inverse).sum(1) / np.maximum(labels.sum(1), 1.0)
    return w / w.sum()


def training_stream(embeddings, labels, *, window, batch_size, n_active, rate, seed, weighting="uniform", draw=1):
    """Endless seeded batches for training.

    Parameters
    ----------
    embeddings : list of np.ndarray, each (T_i, 128)
    labels : np.ndarray, shape (n_tracks, n_outputs)
    window : int
        Patches per sample.
    batch_size : int
    n_active : int
        Tracks active in the mux at once.
    rate : float
        Mean samples drawn from a track before it is replaced.
    seed : int
    weighting : {'uniform', 'inverse_frequency'}
        How often each track is drawn (see :func:`track_weights`).
    draw : int
        Windows a track's streamer yields per draw from the mux (random
        starts). Larger draws cut pescador's per-sample overhead for tracks
        longer than the window; keep 1 when tracks are about one window long
        (their windows would repeat). ``batch_size`` must be a multiple.

    Returns
    -------
    generator of dict
        ``x`` (batch, window, 128), ``mask`` (batch, window), ``y`` (batch, n_outputs).
    """
    for name, value in (("window", window), ("batch_size", batch_size), ("n_active", n_active), ("draw", draw)):
        if value < 1:
            raise ParameterError(f"{name}={value} must be >= 1")
    if batch_size % draw:
        raise ParameterError(f"batch_size={batch_size} must be a multiple of draw={draw}")
    if rate <= 0:
        raise ParameterError(f"rate={rate} must be > 0")
    if not embeddings:
        raise ParameterError("no tracks to stream")
    seeds = np.random.default_rng(seed).integers(0, 2**31, size=len(embeddings))
    streamers = [
        pescador.Streamer(track_windows, emb, y, window=window, seed=int(s), draw=draw)
        for emb, y, s in zip(embeddings, labels, seeds)
    ]
    mux = pescador.StochasticMux(
        streamers, n_active=min(n_active, len(streamers)), rate=rate, weights=track_weights(labels, weighting),
        mode="with_replacement", random_state=seed,
    )
    return pescador.buffer_stream(mux, batch_size // draw, axis=0)


def keras_batches(stream):
    """Map pescador batches to Keras ``((x, mask), y)`` tuples."""
    for batch in stream:
        yield (batch["x"], batch["mask"]), batch["y"]


def pad_tracks(embeddings, length=None):
    """Whole tracks padded to one length, with masks.

    Returns
    -------
    x : np.ndarray, shape (n, length, 128), float32
    mask : np.ndarray, shape (n, length), float32
    """
    length = length or max(len(e) for e in embeddings)
    x = np.zeros((len(embeddings), length, embeddings[0].shape[1]), np.float32)
    m = np.zeros((len(embeddings), length), np.float32)
    for i, e in enumerate(embeddings):
        n = min(len(e), length)
        x[i, :n] = e[:n]
        m[i, :n] = 1.0
    return x, m


def iter_padded_batches(embeddings, batch_size):
    """Deterministic validation batches: every track once, whole, in order.

    Yields
    ------
    (x, mask)
        Each batch padded to its own longest track.
    """
    for start in range(0, len(embeddings), batch_size):
        yield pad_tracks(embeddings[start : start + batch_size])
