"""Model cards: what a head predicts, what it learned from and how, how good it is, and what it needs.

A bundle's card is two things written together by :func:`write_card`: the
machine-readable fields under ``"card"`` in ``bundle.json`` (in the spirit of
Essentia's model JSONs and Hugging Face model cards) and ``MODEL.md``, the same
fields for people, with Hugging Face's YAML header so a Hub repository shows
it. The card never changes what a head outputs, so it is left out of the
bundle's content hash (:func:`tagger.training.bundle.content_hash`).

Cards are derived, never typed: :func:`shipped_card` from a shipped head's
``metrics.json`` (the experiment that chose it, the data it was retrained on,
how its thresholds were chosen), :func:`run_card` from a run folder's
``metrics.json`` and frozen ``config.json``.
"""

import json
import os

from ..embedding import registry
from ..exceptions import DataError, TaggerError
from ..records import write_json_atomic

__all__ = ["AUDIOSET_LICENSE", "FIELDS", "shipped_card", "run_card", "write_card", "render", "summary_line"]

#: the licence of heads that learned from AudioSet's labels
AUDIOSET_LICENSE = "CC-BY-4.0"
#: the card's fields, in the order MODEL.md shows them
FIELDS = (
    "name",
    "summary",
    "task",
    "classes",
    "head",
    "trained_on",
    "protocol",
    "seed",
    "epochs",
    "quality",
    "thresholds",
    "embedding",
    "license",
    "intended_use",
    "limits",
)


def _read(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        raise DataError(f"{folder}: no {name}; a card is derived from it")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _embedding(meta, folder):
    prov = meta.get("provenance") or {}
    kind = registry.stored_kind(meta.get("embedding"))
    if kind not in registry.kinds():
        raise DataError(
            f"{os.path.join(folder, 'bundle.json')}: embedding {kind!r} is not one of {sorted(registry.kinds())}; was"
            " it written by tagger?"
        )
    return {"kind": kind, "needs": registry.kind(kind).description, "provenance": prov}


def summary_line(card):
    """One line: what it predicts and how well, with the protocol named."""
    q = card["quality"]
    std = f" ± {q['std']:.3f}" if q.get("std") is not None else ""
    return (
        f"{card['classes']} {'tags' if card['task'] == 'multilabel' else 'classes'} ({card['task']}), {card['head']}"
        f" head; {q['metric']} {q['value']:.3f}{std} ({q['protocol']})"
    )


# what each shipped task tags, by the task name of its metrics.json (experiments/ship_heads.py)
VOCABULARIES = {
    "music": "music clips of a few seconds or more with AudioSet's music classes",
    "genre10": "music clips of a few seconds or more with AudioSet's ten genre classes",
    "527": "clips of a few seconds or more with all 527 AudioSet classes (music, speech, sounds of every kind)",
}


def shipped_card(folder, *, name, seed=0):
    """The card of a shipped head (``tagger/models/<name>``), from its ``metrics.json`` and ``bundle.json``."""
    metrics, meta, labels = _read(folder, "metrics.json"), _read(folder, "bundle.json"), _read(folder, "labels.json")
    experiment = metrics["experiment"]
    cv = experiment.get("fold_scores") is not None
    task = meta.get("task", "multilabel")
    if "thresholds" in metrics:
        thresholds = {"chosen_on": metrics["thresholds"]["chosen_on"]}
        thresholds["heldout_macro_f1"] = metrics["thresholds"].get("heldout_macro_f1")
    elif task == "singlelabel":
        thresholds = {"chosen_on": "none: the class with the highest probability is the answer"}
    else:
        thresholds = {"chosen_on": "the F1-maximising threshold per tag on the head's training data"}
    card = {
        "name": name,
        "task": task,
        "classes": len(labels),
        "head": metrics["head"],
        "trained_on": metrics["trained_on"] + " (AudioSet's released VGGish embeddings)",
        "protocol": (
            f"recipe {experiment['config']}: chosen on"
            + (" nested cross-validation" if cv else " the validation split")
            + ", then retrained on train + valid with the epochs it chose"
            + (f"; members: {metrics['selection']['procedure']}" if "selection" in metrics else "")
        ),
        "seed": seed,
        "epochs": metrics["epochs"],
        "quality": {
            "metric": metrics["monitor"].split(" (")[0],
            "value": experiment["score"],
            "std": experiment.get("std"),
            "protocol": metrics["monitor"].split(" (", 1)[1].rstrip(")") if " (" in metrics["monitor"] else "",
        },
        "thresholds": thresholds,
        "embedding": _embedding(meta, folder),
        "license": AUDIOSET_LICENSE,
        "intended_use": f"tagging {VOCABULARIES.get(metrics.get('task'), 'clips of a few seconds or more')}"
        + "; research and products alike (attribute AudioSet, CC BY 4.0)",
        "limits": "learned from 10 s YouTube clips of AudioSet's balanced train set (a few dozen to a few hundred"
        " per class); rare classes are scored from few examples; the measured quality is on held-out AudioSet"
        " clips, not on your audio: check it on your own labelled clips with tagger evaluate --truth",
    }
    card["summary"] = summary_line(card)
    return card


def run_card(run_dir, *, name=None, license=None):
    """The card of a run folder's head (``tagger export``), from its ``metrics.json`` and frozen ``config.json``."""
    metrics, meta, cfg = _read(run_dir, "metrics.json"), _read(run_dir, "bundle.json"), _read(run_dir, "config.json")
    labels = _read(run_dir, "labels.json")
    data = cfg["data"]
    task = meta.get("task", data.get("task", "multilabel"))
    valid = data["valid_split"]
    best = metrics.get("best_epoch")
    head, epochs = cfg["head"]["name"], None if best is None else best + 1  # epochs count from 0 in history.csv
    protocol = f"early stopping and learning-rate reduction on split {valid!r}; best epoch kept"
    if "ensemble" in metrics:  # tagger.training.ensemble: the members it averages, each trained on its own
        chosen, members = metrics["ensemble"]["chosen"], metrics["members"]
        head = "ensemble of " + " + ".join(f"{n} ({members[n]['head']})" for n in chosen)
        epochs = ", ".join(f"{n} {members[n]['best_epoch'] + 1}" for n in chosen)
        protocol = (
            f"each member trained separately, {protocol}; members chosen on split {valid!r}"
            f" ({metrics['ensemble']['select']}), their clip probabilities averaged"
        )
    card = {
        "name": " ".join(str(name or cfg.get("name") or os.path.basename(os.path.normpath(run_dir))).split()),
        "task": task,
        "classes": len(labels),
        "head": head,
        "trained_on": f"{data['index']} (split {data['train_split']!r}), vocabulary {data['vocabulary']}",
        "protocol": protocol,
        "seed": cfg.get("seed"),
        "epochs": epochs,
        "quality": {
            "metric": metrics["monitor"],
            "value": metrics["valid_score"],
            "std": None,
            "protocol": f"validation split {data['valid_split']!r}, which also chose the epoch",
        },
        "thresholds": {
            "chosen_on": f"the F1-maximising threshold per tag on split {data['valid_split']!r}"
            if task == "multilabel"
            else "none: the class with the highest probability is the answer"
        },
        "embedding": _embedding(meta, run_dir),
        "license": license or "unspecified: the owner of the training data and labels sets it",
        "intended_use": "tagging clips like those it was trained on, with its vocabulary",
        "limits": "quality measured on the validation split that chose its epoch (optimistic); a held-out test"
        " split (tagger evaluate RUN) or your own labelled clips say more",
    }
    card["summary"] = summary_line(card)
    return card


#: licence ids the Hugging Face Hub knows (its YAML header takes these, lower-case); any other licence is "other"
HUB_LICENSES = (
    "apache-2.0",
    "mit",
    "bsd-2-clause",
    "bsd-3-clause",
    "isc",
    "mpl-2.0",
    "gpl-3.0",
    "lgpl-3.0",
    "agpl-3.0",
    "unlicense",
    "cc0-1.0",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0",
    "cc-by-nd-4.0",
    "openrail",
)


def _hub_license(text):
    """The Hub's id of a licence as given (``MIT`` -> ``mit``), or ``other``."""
    return text.lower() if text.lower() in HUB_LICENSES else "other"


def _model_tag(embedding):
    """The Hub tag of the embedding model a head reads (``vggish``, ``musicnn-mtt`` ...)."""
    kind = embedding.get("kind") or (embedding.get("provenance") or {}).get("kind")
    try:
        return registry.kind(registry.stored_kind(kind)).model
    except TaggerError:
        return "embedding"


def render(card, labels):
    """``MODEL.md``: Hugging Face's YAML header, then the card's fields for people."""
    q = card["quality"]
    std = f" ± {q['std']:.4f}" if q.get("std") is not None else ""
    emb = card["embedding"]
    lines = [
        "---",
        f"license: {_hub_license(card['license'])}",
        "library_name: tagger",
        f"tags: [audio, music-tagging, {_model_tag(emb)}, audio-classification]",
        "---",
        "",
        f"# {card['name']}",
        "",
        card["summary"],
        "",
        f"- **Predicts**: {card['classes']} {'tags' if card['task'] == 'multilabel' else 'classes'}"
        f" ({card['task']}): {', '.join(labels[:12])}{' ...' if len(labels) > 12 else ''} (all in labels.json)",
        f"- **Head**: {card['head']}",
        f"- **Trained on**: {card['trained_on']}",
        f"- **Protocol**: {card['protocol']}"
        + (f"; seed {card['seed']}; {card['epochs']} epochs" if card.get("seed") is not None else ""),
        f"- **Quality**: {q['metric']} {q['value']:.4f}{std} ({q['protocol']})",
        f"- **Thresholds**: {card['thresholds']['chosen_on']}",
        f"- **Needs**: {emb['needs']}"
        + "".join(f"; {key} {emb['provenance'][key]}" for key in ("weights", "pca") if emb["provenance"].get(key)),
        f"- **Licence**: {card['license']}",
        f"- **Intended use**: {card['intended_use']}",
        f"- **Limits**: {card['limits']}",
        "",
        "Use it with `tagger tag CLIPS --model <this folder>` (or `--model hf://OWNER/REPO` from the Hub).",
        "",
    ]
    return "\n".join(lines)


def write_card(folder, card):
    """Write ``MODEL.md`` and the ``"card"`` fields of ``bundle.json`` in ``folder``; the card."""
    meta, labels = _read(folder, "bundle.json"), _read(folder, "labels.json")
    missing = [f for f in FIELDS if f not in card]
    if missing:
        raise DataError(f"card of {folder}: fields {missing} missing")
    meta["card"] = {f: card[f] for f in FIELDS}
    write_json_atomic(meta, os.path.join(folder, "bundle.json"))
    with open(os.path.join(folder, "MODEL.md"), "w", encoding="utf-8") as f:
        f.write(render(card, labels))
    return card
