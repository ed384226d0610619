"""Training and validation streams with pescador 3.

Training: one :class:`pescador.Streamer` per track yields windows of
``window`` consecutive patches (random start) with the track's label vector
and a mask; a seeded :class:`TrackMux` (sampling as pescador's
``StochasticMux`` does, with O(1) draws) mixes ``n_active`` tracks at a time;
:func:`pescador.buffer_stream` makes batches. Short tracks are zero-padded
and masked, never dropped. Validation is deterministic:
every track once, whole, in order.
"""

import functools

import numpy as np
import pescador

from ..exceptions import ParameterError

__all__ = [
    "track_windows",
    "TrackMux",
    "training_stream",
    "mixup",
    "keras_batches",
    "pad_tracks",
    "iter_padded_batches",
]


def _window(emb, start, window):
    """One window of ``window`` patches from ``start``, zero-padded, with its mask."""
    x = np.zeros((window, *emb.shape[1:]), np.float32)  # rows of embeddings, or (96, 64) log-mel patches
    m = np.zeros(window, np.float32)
    piece = emb[start : start + window]
    x[: len(piece)] = piece
    m[: len(piece)] = 1.0
    return x, m


@functools.lru_cache(maxsize=64)
def _ones(shape):
    """A read-only all-ones float32 mask, shared (batches are built by copying it)."""
    ones = np.ones(shape, np.float32)
    ones.setflags(write=False)
    return ones


def _tile(a, draw):
    """``a`` repeated ``draw`` times along a new first axis (a view when ``draw`` is 1)."""
    return a[None] if draw == 1 else np.repeat(a[None], draw, 0)


def _only_window(emb, y, window, draw):
    """The sample of a track no longer than ``window``: the whole track, padded and masked."""
    x, m = _window(emb, 0, window) if len(emb) < window else (np.asarray(emb, np.float32), _ones((window,)))
    return {"x": _tile(x, draw), "mask": _tile(m, draw), "y": _tile(y, draw)}


def _repeat(sample):
    """Generator function: ``sample``, endlessly."""
    while True:
        yield sample


def track_windows(emb, y, *, window, rng, draw=1):
    """Generator function: endless random windows of one track, ``draw`` at a time.

    Parameters
    ----------
    emb : np.ndarray, shape (T, 128), float32
    y : np.ndarray, shape (n_outputs,), float32
    window : int
        Patches per window.
    rng : np.random.Generator
        Source of window starts. :class:`TrackMux` activates streamers
        without copying them, so one generator shared by all tracks advances
        from activation to activation. (pescador's own muxes deep-copy a
        streamer on activation, copying the generator too: every activation
        would then repeat the same starts.)
    draw : int

    Yields
    ------
    dict
        ``x`` (draw, window, 128) float32, ``mask`` (draw, window) float32,
        ``y`` (draw, n_outputs) float32: ``draw`` windows at independent random starts.
    """
    n = len(emb)
    if n <= window:  # the whole (padded) track is the only window
        yield from _repeat(_only_window(emb, y, window, draw))
    windows = np.moveaxis(
        np.lib.stride_tricks.sliding_window_view(emb, window, axis=0), -1, 1
    )  # (n - window + 1, window, ...)
    ones, ys = _ones((draw, window)), _tile(y, draw)
    while True:
        starts = rng.integers(0, n - window + 1, size=draw)
        yield {"x": windows[starts], "mask": ones, "y": ys}


class TrackMux:
    """A seeded stochastic mux over track streamers, with O(1) draws and weights that set long-run shares.

    It samples as pescador's ``StochasticMux(mode='with_replacement',
    dist='poisson')`` does, but is not one (pescador's muxes deep-copy
    themselves and every streamer on activation, and choose over the active
    set per sample): ``n_active`` streamers are active at once; each sample
    comes from an active streamer chosen uniformly; a streamer is replaced
    after ``1 + Poisson(rate - 1)`` samples by one drawn with probability
    proportional to ``weights``. Random numbers are drawn in blocks and
    streamers are activated by calling their generator function, so a draw
    costs a few microseconds instead of pescador's ~30. Like a pescador
    streamer it has :meth:`iterate` and iterates, so
    :func:`pescador.buffer_stream` batches it.

    One difference in meaning: pescador's ``StochasticMux`` activates
    streamers uniformly and uses ``weights`` only to choose among the active
    ones, so in the long run every streamer yields the same share of samples
    whatever its weight. Here ``weights`` are activation probabilities: a
    streamer's long-run share follows its weight (what label-balanced
    sampling needs).

    Parameters
    ----------
    streamers : list of pescador.Streamer
        Each wrapping a generator function.
    n_active : int
    rate : float
        Mean samples per activation (>= 1 counts as given; below 1 means 1).
    weights : np.ndarray, shape (n_streamers,), optional
        Activation weights (uniform when omitted).
    random_state : int
        Seed: every call of :meth:`iterate` replays the same stream.
    block : int
        Random numbers drawn per block.
    """

    def __init__(self, streamers, n_active, rate, *, weights=None, random_state=0, block=4096):
        if rate is None or not rate > 0:
            raise ParameterError(f"TrackMux rate={rate} must be > 0")
        # as pescador's muxes take them: a Streamer, or what a Streamer wraps (a generator function)
        self.streamers = [s if isinstance(s, pescador.Streamer) else pescador.Streamer(s) for s in streamers]
        self.n_streams = len(self.streamers)
        if not self.streamers:
            raise ParameterError("TrackMux needs at least one streamer")
        if int(n_active) < 1:
            raise ParameterError(f"TrackMux n_active={n_active} must be >= 1")
        for i, s in enumerate(self.streamers):
            if not callable(s.streamer):
                raise ParameterError(
                    f"TrackMux streamer {i} wraps {type(s.streamer).__name__}, not a generator function"
                )
        weights = np.ones(self.n_streams) if weights is None else np.asarray(weights, dtype=np.float64)
        if weights.shape != (self.n_streams,) or np.any(weights < 0) or not weights.sum() > 0:
            raise ParameterError(
                f"TrackMux weights must be {self.n_streams} non-negative values with a positive sum, got {weights}"
            )
        self.weights = weights / weights.sum()
        self.n_active, self.rate = int(n_active), float(rate)
        self.seed, self.block = random_state, int(block)

    def __iter__(self):
        return self.iterate()

    def _activations(self, rng):
        """Endless (streamer index, sample count) pairs, drawn a block at a time."""
        cdf = np.cumsum(self.weights)
        cdf /= cdf[-1]
        while True:
            picks = np.minimum(np.searchsorted(cdf, rng.random(self.block), side="right"), self.n_streams - 1)
            counts = 1 + rng.poisson(max(self.rate - 1.0, 0.0), size=self.block)
            yield from zip(picks.tolist(), counts.tolist())

    def iterate(self, max_iter=None):
        rng = np.random.default_rng(self.seed)
        k = min(self.n_active, self.n_streams)
        activations = self._activations(rng)
        streamers = self.streamers

        def activate():
            i, count = next(activations)
            s = streamers[i]
            return s.streamer(*s.args, **s.kwargs), count

        gens, left = [None] * k, [0] * k
        for slot in range(k):
            gens[slot], left[slot] = activate()
        remaining = None if max_iter is None else int(max_iter)
        while remaining is None or remaining > 0:
            for slot in rng.integers(0, k, size=self.block).tolist():
                try:
                    sample = next(gens[slot])
                except StopIteration:  # a finite streamer ran dry: replace it, skip this draw
                    gens[slot], left[slot] = activate()
                    continue
                yield sample
                if remaining is not None:
                    remaining -= 1
                    if not remaining:
                        return
                left[slot] -= 1
                if not left[slot]:
                    gens[slot], left[slot] = activate()


WEIGHTINGS = {"uniform": 0.0, "inverse_sqrt_frequency": 0.5, "inverse_frequency": 1.0}  # name: power of 1 / count


def track_weights(labels, weighting="uniform"):
    """Sampling weight per track.

    ``uniform``: every track alike. ``inverse_frequency``: a track weighs the
    mean of ``1 / count`` over its labels, so rare tags are drawn about as
    often as common ones (label-balanced sampling).
    ``inverse_sqrt_frequency``: the mean of ``1 / sqrt(count)``, half-way
    between the two.

    Returns
    -------
    np.ndarray, shape (n_tracks,), summing to 1
    """
    if weighting not in WEIGHTINGS:
        raise ParameterError(f"weighting={weighting!r} must be one of {', '.join(WEIGHTINGS)}")
    labels = np.asarray(labels, dtype=np.float64)
    if weighting == "uniform":
        w = np.ones(len(labels))
    else:
        inverse = np.maximum(labels.sum(0), 1.0) ** -WEIGHTINGS[weighting]
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
    weighting : {'uniform', 'inverse_sqrt_frequency', 'inverse_frequency'}
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
    rng = np.random.default_rng([seed, 1])  # window starts; the mux draws from its own seed
    # a track no longer than the window has one sample: built once here, not on every activation
    streamers = [
        pescador.Streamer(_repeat, _only_window(emb, y, window, draw))
        if len(emb) <= window
        else pescador.Streamer(track_windows, emb, y, window=window, rng=rng, draw=draw)
        for emb, y in zip(embeddings, labels)
    ]
    mux = TrackMux(
        streamers,
        n_active=min(n_active, len(streamers)),
        rate=rate,
        weights=track_weights(labels, weighting),
        random_state=seed,
    )
    return pescador.buffer_stream(mux, batch_size // draw, axis=0)


def mixup(stream, alpha, *, seed):
    """Mix each batch with a shuffled copy of itself (Zhang et al., 2018).

    Sample ``i`` becomes ``lam_i * a + (1 - lam_i) * b`` for its inputs and
    labels, ``lam_i ~ Beta(alpha, alpha)``, ``b`` a random other sample of
    the batch; the mask is the union of the two masks.

    Parameters
    ----------
    stream : iterable of dict
        Batches with ``x`` (batch, window, 128), ``mask`` (batch, window), ``y`` (batch, n_outputs).
    alpha : float
        Beta parameter; 0 passes batches through unchanged.
    seed : int

    Yields
    ------
    dict
        Batches of the same shapes, float32.
    """
    if alpha < 0:
        raise ParameterError(f"mixup alpha={alpha} must be >= 0")
    if alpha == 0:
        yield from stream
        return
    rng = np.random.default_rng([seed, 2])
    for batch in stream:
        n = len(batch["y"])
        lam = rng.beta(alpha, alpha, size=n).astype(np.float32)
        other = rng.permutation(n)
        yield {
            "x": lam[:, None, None] * batch["x"] + (1 - lam[:, None, None]) * batch["x"][other],
            "mask": np.maximum(batch["mask"], batch["mask"][other]),
            "y": lam[:, None] * batch["y"] + (1 - lam[:, None]) * batch["y"][other],
        }


def keras_batches(stream):
    """Map pescador batches to the heads' Keras ``((x, mask), y)`` tuples.

    :func:`pescador.maps.keras_tuples` picks the keys (and names a malformed
    batch); its inputs come as a list, which Keras 3's generator adapter
    refuses (a list is no ``tf.TypeSpec`` in its output signature), so they
    are handed on as a tuple.
    """
    for x, y in pescador.maps.keras_tuples(stream, inputs=["x", "mask"], outputs="y"):
        yield tuple(x), y


def pad_tracks(embeddings, length=None):
    """Whole tracks padded to one length, with masks.

    Returns
    -------
    x : np.ndarray, shape (n, length, 128), float32
    mask : np.ndarray, shape (n, length), float32
    """
    length = length or max(len(e) for e in embeddings)
    x = np.zeros((len(embeddings), length, *embeddings[0].shape[1:]), np.float32)
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
