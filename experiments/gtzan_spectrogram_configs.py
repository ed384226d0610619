"""Write the GTZAN spectrogram-path configs (experiments/gtzan/*.json): one split, one evaluation, every input.

    python experiments/gtzan_spectrogram_configs.py

For 10 genres and the 8-genre subset, without and with two augmented copies
of each training track: the four from-scratch CNNs on log-mel patches, the
attention head on frozen VGGish embeddings, and VGGish fine-tuned (`fc`)
under the same attention head on the patches. The data folders they name are
made by the `tagger prepare` commands in experiments/README.md.
"""

import json
import pathlib

OUT = pathlib.Path(__file__).resolve().parent / "gtzan"

BASE = {
    "window": 3,
    "batch_size": 32,
    "epochs": 60,
    "steps_per_epoch": 40,
    "mux": {"n_active": 128, "rate": 4.0},
    "optimizer": {"name": "adam", "learning_rate": 0.001},
    "early_stopping": {"patience": 10},
    "reduce_lr": {"factor": 0.5, "patience": 3, "min_lr": 1e-5},
    "seed": 0,
}
HEADS = {
    "cnn4": ("melspec", {"name": "cnn4"}, None),
    "cnn_gru": ("melspec", {"name": "cnn_gru"}, None),
    "parallel_cnn": ("melspec", {"name": "parallel_cnn"}, None),
    "cnn_lstm": ("melspec", {"name": "cnn_lstm"}, None),
    "vggish_attention": ("vggish", {"name": "attention", "hidden": 256, "n_layers": 2, "dropout": 0.5}, None),
    "vggish_finetune_fc": (
        "melspec",
        {"name": "attention", "hidden": 256, "n_layers": 2, "dropout": 0.5},
        {"name": "vggish", "weights": None, "train": "fc", "learning_rate_scale": 0.1},
    ),
}


def main():
    OUT.mkdir(exist_ok=True)
    for genres in ("gtzan10", "gtzan8"):
        for aug in ("", "_aug2"):
            for head, (frontend, head_cfg, trunk) in HEADS.items():
                data = f"data/{genres}_{frontend}{aug}"
                name = f"{genres}{aug}_{head}"
                cfg = {
                    "name": name,
                    "data": {
                        "index": f"{data}/index.csv",
                        "cache": f"{data}/cache",
                        "vocabulary": f"{data}/vocab.json",
                        "task": "singlelabel",
                    },
                    "head": head_cfg,
                    **BASE,
                }
                if frontend == "vggish":
                    cfg["window"] = 10
                if trunk:
                    cfg["trunk"] = trunk
                    cfg["optimizer"] = {"name": "adam", "learning_rate": 0.0003}
                (OUT / f"{name}.json").write_text(json.dumps(cfg, indent=1) + "\n")
    print(f"wrote {len(list(OUT.glob('*.json')))} configs to {OUT}")


if __name__ == "__main__":
    main()
