"""Probes behind the `genre10` caveats of ``experiments/README.md``.

    python experiments/genre10_probes.py fixed|transfer|contrastive|subtree [--seed 0]

Each probe runs over the five folds of ``data/audioset/index_genre10.csv``
(prepared by ``run_audioset.py``) and prints held-out accuracies:

* ``fixed``: dense heads (one, and a 4-member ensemble) trained for fixed
  epoch counts; no fold chooses anything.
* ``transfer``: a dense head pretrained on the ``music`` segments minus the
  held-out fold's videos, fine-tuned on ``genre10`` with a new softmax layer.
* ``contrastive``: a per-patch encoder pretrained without labels (SimCLR; the
  two views are disjoint halves of a segment's patches) on every segment minus
  the held-out fold's videos, then logistic regression on its features.
* ``subtree``: the segments whose only genre comes through a sub-genre
  (Punk rock -> Rock music, ...) added to every training fold.

``fixed``, ``transfer`` and ``subtree`` print each epoch count's score;
``contrastive`` and ``subtree`` print each C's, as the baseline does.
Reading the best of them off the held-out folds is the selection the
nested cross-validation avoids; they bound what a head could reach.
"""

import argparse
import os
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DATA = ROOT / "data/audioset"
GRID = (0.001, 0.003, 0.01, 0.03, 0.1)
# the sub-genres (AudioSet ontology) of the ten genres
SUBGENRES = {
    "Opera": "Classical music",
    "Bluegrass": "Country",
    "Swing music": "Country",
    "Trap music": "Hip hop music",
    "Grime music": "Hip hop music",
    "Dub": "Reggae",
    "Psychedelic rock": "Rock music",
    "Progressive rock": "Rock music",
    "Grunge": "Rock music",
    "Rock and roll": "Rock music",
    "Punk rock": "Rock music",
}


def load(vocab, keep=None):
    """Padded patches, masks, label matrix and video ids of an index (rows ``keep``, default all)."""
    from tagger.training import dataset
    from tagger.training.streams import pad_tracks

    df = dataset.read_index(DATA / f"index_{vocab}.csv")
    if keep is not None:
        df = df[keep(df)]
    names = dataset.read_vocabulary(DATA / f"vocab_{vocab}.json")
    x, m = pad_tracks(dataset.load_embeddings(df["track_id"].astype(str).tolist(), str(DATA / "cache")), 10)
    return df, x, m, dataset.label_matrix(df["labels"].tolist(), names), df["video_id"].to_numpy()


def mean_pool(x, m):
    return (x * m[..., None]).sum(1) / m.sum(1, keepdims=True)


def logistic(f_train, y_train, f_test, y_test):
    """Held-out accuracy of the baseline's model (:func:`tagger.training.baseline.logistic_scores`) for each C of GRID."""
    from tagger.training.baseline import logistic_scores
    from tagger.training.metrics import monitor_score

    return {
        C: monitor_score("singlelabel", y_test, logistic_scores(f_train, y_train, f_test, "singlelabel", C=C))
        for C in GRID
    }


def fit_scored(model, train, test, *, epochs, every, batch_size):
    """Train ``model`` on ``train`` = (x, m, y) for ``epochs``; held-out accuracy every ``every`` epochs."""
    scores = {}
    for e in range(every, epochs + 1, every):
        model.fit([train[0], train[1]], train[2], batch_size=batch_size, epochs=every, verbose=0)
        scores[e] = float((model.predict([test[0], test[1]], verbose=0).argmax(1) == test[2].argmax(1)).mean())
    return scores


def dense_head(n_outputs, task, train, *, members=1):
    import keras

    from tagger.training.heads import build_head, input_stats, loss_for, prior_bias

    x, m, y = train
    model = build_head(
        "dense",
        n_outputs,
        task,
        members=members,
        hidden=256,
        n_layers=2,
        dropout=0.5,
        standardize=True,
        output_bias=prior_bias(y, task),
        input_stats=input_stats([xi[mi > 0] for xi, mi in zip(x, m)]),
    )
    model.compile(keras.optimizers.Adam(1e-3), loss_for(task))
    return model


def probe_fixed(genre, fold, seed, gvid):
    import keras

    out = {}
    for members in (1, 4):
        for k in range(5):
            keras.utils.set_random_seed(seed)
            train, test = [tuple(a[sel] for a in genre) for sel in (fold != k, fold == k)]
            scores = fit_scored(
                dense_head(10, "singlelabel", train, members=members),
                train,
                test,
                epochs=60,
                every=10,
                batch_size=32 * members,
            )
            for e, s in scores.items():
                out.setdefault(f"dense x{members}, {e} epochs", []).append(s)
    return out


def probe_transfer(genre, fold, seed, gvid):
    import keras

    from tagger.training.heads import prior_bias

    _, mx, mm, my, mvid = load("music")
    out = {}
    for k in range(5):
        keras.utils.set_random_seed(seed)
        keep = ~np.isin(mvid, gvid[fold == k])
        pre = dense_head(my.shape[1], "multilabel", (mx[keep], mm[keep], my[keep]))
        pre.fit([mx[keep], mm[keep]], my[keep], batch_size=128, epochs=10, verbose=0)
        train, test = [tuple(a[sel] for a in genre) for sel in (fold != k, fold == k)]
        out_layer = keras.layers.Dense(
            10, activation="softmax", bias_initializer=keras.initializers.Constant(prior_bias(train[2], "singlelabel"))
        )
        model = keras.Model(pre.inputs, out_layer(pre.get_layer("output").input))
        model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy")
        for e, s in fit_scored(model, train, test, epochs=40, every=5, batch_size=32).items():
            out.setdefault(f"music-pretrained dense, {e} fine-tuning epochs", []).append(s)
    return out


def simclr_encoder(x, m, seed, *, epochs=20, batch_size=512, temperature=0.1):
    """A per-patch encoder (128 -> 512 -> 256) trained with the NT-Xent loss; views: disjoint halves of each segment's patches."""
    import keras
    import tensorflow as tf
    from keras import layers

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    inp = keras.Input((x.shape[-1],))
    h = inp
    for width in (512, 256):
        h = layers.ReLU()(layers.BatchNormalization()(layers.Dense(width)(h)))
    encoder = keras.Model(inp, h)
    projection = keras.Sequential([layers.Dense(256), layers.ReLU(), layers.Dense(128)])
    optimizer = keras.optimizers.Adam(1e-3)

    def view(xb, mb):
        h = tf.reshape(encoder(tf.reshape(xb, (-1, x.shape[-1])), training=True), (tf.shape(xb)[0], x.shape[1], -1))
        return tf.math.l2_normalize(
            projection(tf.reduce_sum(h * mb[..., None], 1) / tf.reduce_sum(mb, 1, keepdims=True), training=True), -1
        )

    @tf.function
    def step(xb, m1, m2):
        with tf.GradientTape() as tape:
            z1, z2 = view(xb, m1), view(xb, m2)
            logits = tf.matmul(z1, z2, transpose_b=True) / temperature
            target = tf.range(tf.shape(z1)[0])
            loss = keras.losses.sparse_categorical_crossentropy(
                target, logits, from_logits=True
            ) + keras.losses.sparse_categorical_crossentropy(target, tf.transpose(logits), from_logits=True)
            loss = tf.reduce_mean(loss) / 2
        variables = encoder.trainable_variables + projection.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x) - batch_size + 1, batch_size):
            idx = order[start : start + batch_size]
            mb = m[idx]
            r = rng.random(mb.shape) * mb
            half = r > np.nanmedian(np.where(mb > 0, r, np.nan), axis=1, keepdims=True)
            step(x[idx], (mb * half).astype(np.float32), (mb * ~half).astype(np.float32))
    return encoder


def probe_contrastive(genre, fold, seed, gvid):
    _, ax, am, _, avid = load("527")
    usable = am.sum(1) >= 4  # two views of at least two patches
    stats = ax[am > 0].mean(0), ax[am > 0].std(0) + 1e-6
    out = {}
    for k in range(5):
        keep = usable & ~np.isin(avid, gvid[fold == k])
        encoder = simclr_encoder((ax[keep] - stats[0]) / stats[1], am[keep], seed)
        x, m, y = genre
        h = encoder.predict(((x - stats[0]) / stats[1]).reshape(-1, x.shape[-1]), verbose=0, batch_size=4096)
        features = mean_pool(h.reshape(len(x), x.shape[1], -1), m)
        for C, s in logistic(features[fold != k], y[fold != k], features[fold == k], y[fold == k]).items():
            out.setdefault(f"logistic regression on contrastive features, C={C}", []).append(s)
    return out


def probe_subtree(genre, fold, seed, gvid):
    import keras

    from tagger.training import dataset

    names = dataset.read_vocabulary(DATA / "vocab_genre10.json")
    in_genre10 = set(dataset.read_index(DATA / "index_genre10.csv")["track_id"])

    def only_genre(labels):
        mapped = {SUBGENRES.get(n, n) for n in labels.split("|") if n in names or n in SUBGENRES}
        return mapped.pop() if len(mapped) == 1 else None

    df, ex, em, _, evid = load(
        "527", keep=lambda d: ~d["track_id"].isin(in_genre10) & d["labels"].map(only_genre).notna()
    )
    ey = dataset.label_matrix(df["labels"].map(only_genre).tolist(), names)
    print(f"{len(df)} extra segments: {df['labels'].map(only_genre).value_counts().to_dict()}")
    out = {}
    for k in range(5):
        extra = ~np.isin(evid, gvid[fold == k])
        train = tuple(np.concatenate([a[fold != k], b[extra]]) for a, b in zip(genre, (ex, em, ey)))
        test = tuple(a[fold == k] for a in genre)
        for C, s in logistic(mean_pool(train[0], train[1]), train[2], mean_pool(test[0], test[1]), test[2]).items():
            out.setdefault(f"logistic regression + sub-genre segments, C={C}", []).append(s)
        keras.utils.set_random_seed(seed)
        for e, s in fit_scored(
            dense_head(10, "singlelabel", train), train, test, epochs=60, every=10, batch_size=32
        ).items():
            out.setdefault(f"dense + sub-genre segments, {e} epochs", []).append(s)
    return out


PROBES = {"fixed": probe_fixed, "transfer": probe_transfer, "contrastive": probe_contrastive, "subtree": probe_subtree}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("probe", choices=sorted(PROBES))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (DATA / "index_genre10.csv").exists():
        sys.exit(f"{DATA}: not prepared; run experiments/run_audioset.py or `tagger prepare audioset` first")
    df, x, m, y, gvid = load("genre10")
    fold = df["fold"].to_numpy()
    started = time.perf_counter()
    genre = (x, m, y)
    results = PROBES[args.probe](genre, fold, args.seed, gvid)
    base = {C: [] for C in GRID}
    for k in range(5):
        for C, s in logistic(
            mean_pool(x[fold != k], m[fold != k]), y[fold != k], mean_pool(x[fold == k], m[fold == k]), y[fold == k]
        ).items():
            base[C].append(s)
    for C, s in base.items():
        print(f"baseline, C={C}: {np.mean(s):.4f} ± {np.std(s):.4f}")
    for name, s in results.items():
        print(f"{name}: {np.mean(s):.4f} ± {np.std(s):.4f}")
    print(f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
