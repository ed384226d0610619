"""musicnn's own four taggers as shipped heads: ``tagger/models/{musicnn-mtt,musicnn-msd,vgg-mtt,vgg-msd}``.

    python experiments/ship_musicnn_taggers.py [--weights-dir DIR]

Nothing is trained here. Each head is tagger's ``autopool`` head with no hidden layer: one dense layer per
patch holding the network's own last layer (``dense_1`` on ``penultimate``, 200 -> 50, for musicnn; ``dense`` on
``pool5``, 256 -> 50, for vgg), read from musicnn's checkpoint, and a sigmoid; AutoPool's alpha is 0, so the
clip's score is the mean of the per-patch sigmoids, as musicnn's ``top_tags`` ranks them. No thresholds are
chosen (no MagnaTagATune or MSD audio here to choose them on): ``tagger tag`` ranks the tags (``--top-n``), and
a tag/no-tag answer uses 0.5, stated in each card. Weights: ``--weights-dir`` (a folder holding musicnn's four
checkpoint folders), else ``$TAGGER_MUSICNN_WEIGHTS``, else the installed ``musicnn`` package.
"""

import argparse
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LAYER = {"musicnn": "penultimate", "vgg": "pool5"}


def first_figure(weights_folder):
    """The first figure of a network's ``experiment.result`` (its ROC-AUC: MTT_musicnn names it; the others write
    'AUC' twice), as written."""
    text = pathlib.Path(weights_folder, "experiment.result").read_text()
    return float(text.split("AUC: ", 1)[1].split()[0])


def card(name, kind, provenance, value):
    from tagger.embedding import registry
    from tagger.embedding.musicnn import params

    folder, architecture, dataset = params.NETWORKS[name]
    figures = params.TEST_FIGURES[folder]
    mtt = dataset == "MTT"
    return {
        "name": name,
        "summary": f"musicnn's own {folder} tagger: 50 {dataset} tags (multilabel); {figures} (musicnn's"
        " experiment.result)",
        "task": "multilabel",
        "classes": params.NUM_CLASSES,
        "head": f"{folder}'s output layer per patch ({LAYER[architecture]} -> 50 sigmoids), mean over the clip",
        "trained_on": params.DATASETS[dataset],
        "protocol": f"trained by musicnn's authors (Pons & Serra 2019, musicnn 0.1.0's {folder}); ported, not"
        " retrained: the output layer of its checkpoint, the mean of the per-patch sigmoids as musicnn's"
        " top_tags ranks; parity with musicnn's own extractor is tested (tests/test_musicnn.py)",
        "seed": None,
        "epochs": None,
        "quality": {
            "metric": "ROC-AUC" if folder == "MTT_musicnn" else "'AUC' (first of the two the file writes)",
            "value": value,
            "std": None,
            "protocol": f"musicnn's {'MagnaTagATune' if mtt else 'MSD'} test set, as its experiment.result"
            " writes it (not measured here: no such audio on these machines)",
        },
        "thresholds": {
            "chosen_on": "none chosen (no MagnaTagATune or MSD audio here to choose them on): tagger tag ranks"
            " the tags (--top-n); where a tag/no-tag answer is asked, 0.5 for every tag"
        },
        "embedding": {
            "kind": kind,
            "needs": registry.kind(kind).description,
            "provenance": provenance,
        },
        "license": "ISC",
        "intended_use": "research: tagging music with musicnn's own tags, or checking a port against musicnn;"
        " the ISC licence covers musicnn's code and weight files",
        "limits": (
            "learned from MagnaTagATune's 29 s clips of Magnatune's catalogue (CC BY-NC-SA audio; its tags are"
            " noisy and overlapping: 'female', 'woman', 'female vocal')"
            if mtt
            else "learned from the Million Song Dataset's 30 s previews with Last.fm's crowd tags (decades, moods,"
            " genres; popularity-biased)"
        )
        + "; whether the training audio's licence bears on commercial use of these weights is not settled here:"
        " tagger does not claim it is safe",
    }


def ship(name, weights_dir, out_root):
    import keras
    import numpy as np

    from tagger.embedding import provenance
    from tagger.embedding.musicnn import params
    from tagger.embedding.musicnn.extractor import MusicnnExtractor
    from tagger.embedding.musicnn.network import output_layer, read_weights
    from tagger.records import write_folder_atomic, write_json_atomic
    from tagger.training import bundle
    from tagger.training import card as cards
    from tagger.training.heads import build_head

    folder, architecture, dataset = params.NETWORKS[name]
    source = os.path.join(weights_dir, folder) if weights_dir else None
    layer = LAYER[architecture]
    extractor = MusicnnExtractor(name, layer, weights=source)
    kernel, bias = output_layer(read_weights(extractor.weights_source, name), name)
    head = build_head("autopool", params.NUM_CLASSES, "multilabel", n_layers=0, embedding_size=kernel.shape[0])
    head.get_layer("patch_output").set_weights([kernel, bias])
    alpha = head.get_layer("output")
    alpha.set_weights([np.zeros_like(w) for w in alpha.get_weights()])
    head.name = name.replace("-", "_")
    kind = f"{name}:{layer}"
    record = provenance.of_extractor(extractor)

    def write(out):
        head.save(os.path.join(out, "model.keras"))
        write_json_atomic(list(params.LABELS[dataset]), os.path.join(out, "labels.json"))
        # every tag listed, none chosen (null): the bundle is whole, and readers use 0.5 where a tag/no-tag answer is asked
        write_json_atomic({t: None for t in params.LABELS[dataset]}, os.path.join(out, "thresholds.json"))
        write_json_atomic(
            {"task": f"{dataset.lower()}50", "source": f"musicnn 0.1.0 {folder}", "test": params.TEST_FIGURES[folder]},
            os.path.join(out, "metrics.json"),
        )
        bundle.write_meta(
            out,
            embedding=kind,
            task="multilabel",
            window=10,
            note=f"musicnn's {folder} output layer on its {layer} (per 3 s patch), the clip's score the mean",
            provenance=record,
        )
        cards.write_card(out, card(name, kind, record, first_figure(extractor.weights_source)))

    out = os.path.join(out_root, name)
    write_folder_atomic(out, write, overwrite=True, what="bundle")
    keras.backend.clear_session()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights-dir", default=None, help="a folder holding musicnn's four checkpoint folders")
    ap.add_argument("--out", default=str(ROOT / "tagger/models"))
    args = ap.parse_args()
    from tagger.embedding.musicnn import params

    for name in params.NETWORKS:
        print(ship(name, args.weights_dir, args.out))


if __name__ == "__main__":
    main()
