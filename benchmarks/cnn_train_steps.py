"""Training steps/s of the spectrogram heads on this machine: the CNNs and fine-tuned VGGish.

    python benchmarks/cnn_train_steps.py [--batch-size 32] [--window 3] [--steps 20] [--weights CKPT]

Each head trains on random log-mel patches of the VGGish frontend's shape
((batch, window, 96, 64), as the patch cache streams them); the figure is the
median of three timed runs of ``--steps`` steps after one warm-up run. The
fine-tuning rows put VGGish (``--weights``, else random weights in the
official layout: speed does not depend on the values) under the attention
head with ``train`` none, fc and all. Prints the device TensorFlow used.
"""

import os
import pathlib
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    from common import parser

    ap = parser(__doc__)
    ap.set_defaults(batch_size=32)
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--only", action="append", default=[], help="time only these rows (repeatable)")
    args = ap.parse_args()
    import keras
    import tensorflow as tf

    from tagger.testing import random_weights, write_checkpoint
    from tagger.training.finetune import load_trunk, optimizer, trunk_model
    from tagger.training.heads import build_head

    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch_size, args.window, 96, 64)).astype(np.float32)
    mask = np.ones((args.batch_size, args.window), np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 10, args.batch_size), 10)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or write_checkpoint(random_weights(0), os.path.join(tmp, "vggish_model.ckpt"), version=2)
        rows = {
            name: (lambda name=name: (build_head(name, 10, "singlelabel"), keras.optimizers.Adam(1e-3)))
            for name in ("cnn4", "cnn_gru", "parallel_cnn", "cnn_lstm")
        }
        for train in ("none", "fc", "all"):
            rows[f"vggish {train} + attention"] = lambda train=train: (
                trunk_model(
                    build_head("attention", 10, "singlelabel"),
                    load_trunk(weights=weights, train=train, dtype="float16" if device == "GPU" else "float32"),
                ),
                optimizer("adam", trunk_scale=0.1, learning_rate=1e-3),
            )
        print(f"batch {args.batch_size} x window {args.window} patches, {args.steps} steps per timing, {device}")
        for name, make in rows.items():
            if args.only and name not in args.only:
                continue
            model, opt = make()
            model.compile(optimizer=opt, loss="categorical_crossentropy")
            model.train_on_batch((x, mask), y)  # build and trace
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                for _ in range(args.steps):
                    model.train_on_batch((x, mask), y)
                times.append(time.perf_counter() - started)
            print(
                f"{name:28s} {args.steps / np.median(times):7.2f} steps/s ({model.count_params() / 1e6:.2f} M parameters)"
            )


if __name__ == "__main__":
    main()
