"""Fine-tuning VGGish: a frozen trunk equals the cached-embedding path; `fc` moves only the dense layers; runs tag."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import make_config

from tagger.embedding import cache
from tagger.embedding.spectrogram import PatchExtractor


@pytest.fixture(scope="module")
def patches(gtzan_files):
    extractor = PatchExtractor()
    return [
        extractor.embed(__import__("tagger.embedding.audio", fromlist=["load"]).load(p), 16000)[0]
        for p in gtzan_files[:4]
    ]


def test_a_frozen_trunk_scores_as_the_head_on_cached_embeddings(ckpt_path, embedder, patches):
    from tagger.training.finetune import load_trunk, trunk_model
    from tagger.training.heads import build_head

    head = build_head("attention", 5, "multilabel", hidden=32, n_layers=1)
    model = trunk_model(head, load_trunk(weights=ckpt_path, train="none"))
    for p in patches[:2]:
        x = p.astype(np.float32)[None]
        mask = np.ones((1, len(p)), np.float32)
        emb = embedder.run(p.astype(np.float32))[None]  # what `tagger embed` caches for these patches
        np.testing.assert_allclose(np.asarray(model((x, mask))), np.asarray(head((emb, mask))), atol=1e-4)


def test_fc_training_moves_only_the_dense_layers(ckpt_path, patches):
    import keras

    from tagger.training.finetune import load_trunk, optimizer, trunk_model
    from tagger.training.heads import build_head

    trunk = load_trunk(weights=ckpt_path, train="fc")
    model = trunk_model(build_head("dense", 3, "singlelabel", hidden=16, n_layers=1), trunk)
    model.compile(optimizer=optimizer("adam", trunk_scale=0.1, learning_rate=1e-3), loss="categorical_crossentropy")
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in trunk.layers if layer.get_weights()}
    x = np.stack([p[:3] for p in patches[:3]]).astype(np.float32)
    model.train_on_batch((x, np.ones((3, 3), np.float32)), keras.utils.to_categorical([0, 1, 2], 3))
    for layer in trunk.layers:
        if not layer.get_weights():
            continue
        moved = any(not np.array_equal(a, b) for a, b in zip(before[layer.name], layer.get_weights()))
        assert moved == (layer.name in ("fc1_1", "fc1_2", "fc2")), layer.name


def test_trunk_steps_scale_the_learning_rate():
    """SGD makes the step visible: a trunk layer's variable moves by scale x the head's step for the same gradient."""
    import keras

    from tagger.training.finetune import optimizer

    trunk_layer, head_layer = keras.layers.Dense(2, name="fc2"), keras.layers.Dense(2, name="output")
    for layer in (trunk_layer, head_layer):
        layer.build((None, 2))
    opt = optimizer("sgd", trunk_scale=0.25, learning_rate=1.0)
    variables = [trunk_layer.kernel, head_layer.kernel]
    starts = [np.asarray(v).copy() for v in variables]
    opt.apply([np.ones((2, 2), np.float32)] * 2, variables)
    np.testing.assert_allclose(np.asarray(variables[0]) - starts[0], -0.25, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(variables[1]) - starts[1], -1.0, rtol=1e-5)


@pytest.mark.backends
@pytest.mark.slow
def test_a_fine_tuning_run_resumes_and_tags_like_any_other(ckpt_path, gtzan_files, patches, tmp_path):
    """Config trunk section -> run folder whose model runs its own trunk on patches; stop after epoch 1, resume, tag."""
    from tagger.tagging.api import Tagger
    from tagger.training.config import validate
    from tagger.training.train import fit

    extractor = PatchExtractor()
    rows = []
    for i, (path, p) in enumerate(zip(gtzan_files, patches)):
        p = p[:8]  # 7.7 s of each track: every validation pass runs the whole trunk over every patch
        cache.write_entry(
            tmp_path / "cache",
            path.stem,
            cache.make_entry(
                p,
                np.arange(len(p)) * 0.96,
                kind="melspec",
                frontend=extractor.frontend,
                weights=extractor.network_id,
                source=str(path),
            ),
        )
        rows.append(
            {
                "track_id": path.stem,
                "path": str(path),
                "split": "train" if i < 3 else "valid",
                "labels": path.parent.name,
                "duration": 30.0,
            }
        )
    rows.append({**rows[0], "split": "valid"})
    pd.DataFrame(rows).to_csv(tmp_path / "index.csv", index=False)
    (tmp_path / "vocab.json").write_text(json.dumps(sorted({r["labels"] for r in rows})))
    cfg = validate(
        {
            **make_config(tmp_path, data={"task": "singlelabel"}),
            "head": {"name": "dense", "hidden": 16, "n_layers": 1},
            "window": 2,
            "batch_size": 4,
            "epochs": 2,
            "steps_per_epoch": 2,
            "mux": {"n_active": 3, "rate": 2.0},
            "trunk": {"name": "vggish", "weights": ckpt_path, "train": "fc", "learning_rate_scale": 0.1},
        }
    )

    def stop(epoch, score):
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(cfg, str(tmp_path / "run"), verbose=0, on_epoch=stop)
    metrics = fit(cfg, str(tmp_path / "run"), verbose=0)  # resumes at epoch 1, with the trunk's optimizer state
    assert metrics["epochs_run"] == 2 and len(pd.read_csv(tmp_path / "run/history.csv")) == 2
    assert json.loads((tmp_path / "run/bundle.json").read_text())["embedding"] == "melspec"
    tagger = Tagger(str(tmp_path / "run"))  # no VGGish weights given: the run carries its own trunk
    df = tagger.tag([str(gtzan_files[0])], workers=0)
    assert len(df) == 1 and df["tags"][0] in json.loads((tmp_path / "vocab.json").read_text())
