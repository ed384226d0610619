"""Does the pescador pipeline outrun the model? Batches/s produced vs consumed.

    python benchmarks/stream_throughput.py [--config experiments/audioset_music_dense.json] [--batches 1000]

Produced: batches drawn from ``tagger.training.streams.training_stream`` (TrackMux, a
pescador StochasticMux with O(1) draws, over one Streamer per track +
buffer_stream), as training draws them. For reference, the same streamers
through pescador's own StochasticMux.
Consumed: ``train_on_batch`` steps of the config's head on those same batches.
Needs the prepared AudioSet data (``tagger prepare audioset ../shared/data/audioset --out data/audioset``).
"""

import argparse
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
KEEP = 20  # batches kept for timing the model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(ROOT / "experiments/audioset_music_dense.json"))
    ap.add_argument("--batches", type=int, default=1000)
    ap.add_argument(
        "--synthetic",
        metavar="N,T,TAGS",
        default=None,
        help="random tracks instead of the config's data, e.g. 15000,30,50 (MagnaTagATune-shaped)",
    )
    args = ap.parse_args()
    os.chdir(ROOT)
    import numpy as np

    from tagger.training.config import load_config, validate
    from tagger.training.dataset import load_split
    from tagger.training.heads import loss_for
    from tagger.training.streams import training_stream
    from tagger.training.train import build_run_head

    if args.synthetic:
        import json

        n, t, tags = (int(v) for v in args.synthetic.split(","))
        rng = np.random.default_rng(0)
        emb = [rng.standard_normal((t, 128)).astype(np.float32) for _ in range(n)]
        y = (rng.random((n, tags)) < 0.05).astype(np.float32)
        with open(args.config, encoding="utf-8") as f:
            raw = json.load(f)
        raw["data"] = {"index": ".", "cache": ".", "vocabulary": ".", "task": raw["data"].get("task", "multilabel")}
        cfg = validate(raw)
        args.config += f" (synthetic: {n} tracks x {t} patches, {tags} tags)"
    else:
        cfg = load_config(args.config)
        _, emb, y = load_split(cfg, "train")
    mux = cfg["mux"]
    s = training_stream(
        emb,
        y,
        window=cfg["window"],
        batch_size=cfg["batch_size"],
        n_active=mux["n_active"],
        rate=mux["rate"],
        seed=0,
        weighting=mux["weighting"],
        draw=mux["draw"],
    )
    next(s)
    t0 = time.perf_counter()
    batches = []
    for i in range(args.batches):  # as in training, batches are dropped once used (a few kept for the model)
        batch = next(s)
        if i < KEEP:
            batches.append(batch)
    produce = args.batches / (time.perf_counter() - t0)
    reference = pescador_rate(emb, y, cfg, max(args.batches // 5, 20))

    task = cfg["data"]["task"]
    model = build_run_head(cfg, emb, y)
    model.compile(optimizer="adam", loss=loss_for(task))
    for b in batches[:5]:
        model.train_on_batch((b["x"], b["mask"]), b["y"])
    steps = min(args.batches, 200)  # the model's rate settles sooner
    t0 = time.perf_counter()
    for i in range(steps):
        b = batches[i % KEEP]
        model.train_on_batch((b["x"], b["mask"]), b["y"])
    consume = steps / (time.perf_counter() - t0)
    print(
        f"config: {args.config}: {len(emb)} tracks, batch {cfg['batch_size']} x {cfg['window']} patches,"
        f" mux draw {mux['draw']}, n_active {mux['n_active']}, head {cfg['head']['name']}"
    )
    print(f"pipeline produces : {produce:8.1f} batches/s (TrackMux + buffer_stream)")
    print(f"  for reference   : {reference:8.1f} batches/s through pescador.StochasticMux")
    print(f"model consumes    : {consume:8.1f} batches/s (train_on_batch)")
    print(f"ratio             : {produce / consume:8.1f}x")


def pescador_rate(emb, y, cfg, n_batches):
    """Batches/s of the same track streamers through pescador's StochasticMux (deep copy per activation)."""
    import numpy as np
    import pescador

    from tagger.training.streams import track_weights, track_windows

    mux, rng = cfg["mux"], np.random.default_rng(0)
    streamers = [
        pescador.Streamer(track_windows, e, t, window=cfg["window"], rng=rng, draw=mux["draw"]) for e, t in zip(emb, y)
    ]
    stochastic = pescador.StochasticMux(
        streamers,
        n_active=min(mux["n_active"], len(streamers)),
        rate=mux["rate"],
        weights=track_weights(y, mux["weighting"]),
        mode="with_replacement",
        random_state=0,
    )
    s = pescador.buffer_stream(stochastic, cfg["batch_size"] // mux["draw"], axis=0)
    next(s)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(s)
    return n_batches / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()
