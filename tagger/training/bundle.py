"""Model bundles: a head with everything needed to use it.

A bundle folder holds ``model.keras``, ``labels.json``, ``thresholds.json``,
``metrics.json`` and ``bundle.json`` (the frontend parameters and the kind of
embedding the head expects: ``"postprocessed"`` for heads trained on
AudioSet's released, PCA-whitened and quantised features; ``"raw"`` for
heads trained on raw VGGish output). Shipped bundles live in
``tagger/models/<name>/``; a run folder from ``tagger train`` works too.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from typing import Any

import numpy as np

from ..embedding import registry
from ..exceptions import DataError, ParameterError
from ..records import write_folder_atomic, write_json_atomic
from . import card as cards
from . import hub

__all__ = [
    "SHIPPED_DIR",
    "shipped",
    "shipped_summaries",
    "resolve",
    "export",
    "export_run",
    "write_meta",
    "read_meta",
    "read_labels",
    "load_head",
    "content_hash",
]

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "models")
FILES = ("model.keras", "labels.json", "thresholds.json", "metrics.json")


def shipped() -> list[str]:
    """Names of the bundles shipped with the package."""
    if not os.path.isdir(SHIPPED_DIR):
        return []
    return sorted(n for n in os.listdir(SHIPPED_DIR) if os.path.exists(os.path.join(SHIPPED_DIR, n, "model.keras")))


def shipped_summaries() -> dict[str, str]:
    """Shipped bundle name -> the one-line summary of its model card (``tagger models``)."""
    out = {}
    for name in shipped():
        try:
            out[name] = read_meta(os.path.join(SHIPPED_DIR, name)).get("card", {}).get("summary", "(no card)")
        except DataError:
            out[name] = "(no bundle.json)"
    return out


def resolve(name_or_path: str) -> str:
    """Folder of a shipped bundle name, a bundle folder, a run folder or a Hub head (``hf://OWNER/REPO[@REVISION]``)."""
    if hub.is_hub(name_or_path):
        return hub.fetch(name_or_path)
    if os.path.isdir(name_or_path) and os.path.exists(os.path.join(name_or_path, "model.keras")):
        check_finished(name_or_path)
        return os.fspath(name_or_path)
    candidate = os.path.join(SHIPPED_DIR, str(name_or_path))
    if os.path.exists(os.path.join(candidate, "model.keras")):
        return candidate
    folds = [
        p
        for p in sorted(glob.glob(os.path.join(glob.escape(os.fspath(name_or_path)), "fold*", "model.keras")))
        if os.path.basename(os.path.dirname(p))[4:].isdigit()
    ]
    if os.path.isdir(name_or_path) and folds:
        raise DataError(
            f"{name_or_path}: a cross-validated run, a head per fold and none over all its clips; its folds are"
            f" scored by tagger evaluate {name_or_path}. To tag, give one fold's head (--model"
            f" {os.path.dirname(folds[0])}), or train one head on every clip (the config without data.cv_folds)"
        )
    listed = "".join(f"\n  {name}: {summary}" for name, summary in shipped_summaries().items())
    raise DataError(
        f"{name_or_path}: no such model; give a shipped model, a run or bundle folder, or hf://OWNER/REPO."
        f" Shipped models: {', '.join(shipped()) or 'none'}{listed}"
    )


def check_finished(folder: str) -> None:
    """Refuse a run folder whose training has not finished (a head, but no ``metrics.json``: killed or running).

    Its ``model.keras`` is the best epoch so far and its thresholds are not chosen yet: tagging, evaluating or
    exporting it would pass off a partial head as the run's.
    """
    if not os.path.exists(os.path.join(folder, "metrics.json")):
        raise DataError(
            f"{folder}: an unfinished training run (it has no metrics.json: killed, or still training); finish it"
            f" with tagger train {os.path.join(folder, 'config.json')} --run-dir {folder} (it resumes), then use it"
        )


def read_labels(folder: str) -> tuple[list[str], np.ndarray]:
    """Labels and per-tag thresholds of a bundle or run folder.

    Returns
    -------
    labels : list of str
    thresholds : np.ndarray, shape (n_labels,)
        From ``thresholds.json``; 0.5 where none was chosen (or no file).
    """
    path = os.path.join(folder, "labels.json")
    if not os.path.exists(path):
        raise DataError(f"{folder}: no labels.json")
    with open(path, encoding="utf-8") as f:
        labels = json.load(f)
    stored = {}
    path = os.path.join(folder, "thresholds.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    return labels, np.array([0.5 if stored.get(t) is None else stored[t] for t in labels])


def write_meta(
    folder: str,
    *,
    embedding: str,
    task: str,
    window: int,
    note: str = "",
    frontend: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``bundle.json``: what a head expects (used by run folders and exported bundles alike).

    ``frontend``: the settings of its inputs (default: the VGGish frontend, or
    the feature settings for ``features``); a patch head records its patches'.
    ``provenance``: the record of the embeddings it was trained on
    (:mod:`tagger.embedding.provenance`), checked when it tags.
    """
    if embedding not in registry.kinds():
        raise DataError(f"embedding={embedding!r} must be one of {registry.kinds()}")
    if frontend is None:
        frontend = registry.model(registry.kind(embedding).model).frontend()
    meta = {"embedding": embedding, "frontend": frontend, "task": task, "window": window, "note": note}
    if provenance is not None:
        meta["provenance"] = provenance
    write_json_atomic(meta, os.path.join(folder, "bundle.json"))
    return meta


def read_meta(folder: str) -> dict[str, Any]:
    """``bundle.json`` of a bundle or run folder."""
    path = os.path.join(folder, "bundle.json")
    if not os.path.exists(path):
        raise DataError(f"{folder}: no bundle.json (what embeddings the head expects); retrain or export it")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def export(run_dir: str, out_dir: str, *, embedding: str, task: str, window: int, note: str = "") -> str:
    """Copy a run's model (without optimizer state), labels, thresholds and metrics into a bundle folder with ``bundle.json``."""
    missing = [f for f in FILES if not os.path.exists(os.path.join(run_dir, f))]
    if missing:
        raise DataError(f"{run_dir}: cannot export, missing {missing}")
    os.makedirs(out_dir, exist_ok=True)
    for name in FILES:
        if name == "model.keras":
            # uncompiled: the optimizer's state is for training, not for tagging (a third of the size)
            load_head(os.path.join(run_dir, name), compile=False).save(os.path.join(out_dir, name))
        else:
            shutil.copy(os.path.join(run_dir, name), os.path.join(out_dir, name))
    meta = read_meta(run_dir) if os.path.exists(os.path.join(run_dir, "bundle.json")) else {}
    write_meta(
        out_dir,
        embedding=embedding,
        task=task,
        window=window,
        note=note,
        frontend=meta.get("frontend"),
        provenance=meta.get("provenance"),
    )
    return out_dir


def export_run(
    run_dir: str, out_dir: str, *, name: str | None = None, license: str | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """``tagger export``: a run's head as a Hub-ready bundle folder, with its model card, whole or not at all.

    The bundle (:func:`export`) with ``MODEL.md`` and the card's fields in
    ``bundle.json`` (:func:`tagger.training.card.run_card`), and ``README.md``,
    the same card, which is what a Hugging Face repository shows. It is
    written into a temporary sibling and renamed into place
    (:func:`tagger.records.write_folder_atomic`): a failure or a kill leaves
    no half-written bundle, and ``out_dir`` as it was.

    Parameters
    ----------
    run_dir, out_dir : str
        The run folder, and the bundle folder to write (never the run folder, nor inside it).
    name, license : str, optional
        The card's name and licence.
    overwrite : bool
        Replace an existing ``out_dir`` (refused otherwise).

    Returns
    -------
    dict
        The card.
    """
    run_dir, out_dir = os.fspath(run_dir), os.fspath(out_dir)
    if not os.path.exists(os.path.join(run_dir, "model.keras")):
        raise DataError(
            f"{run_dir}: no model.keras to export (a cross-validated run has one head per fold, fold<k>/; train"
            " once without cv_folds to get one head)"
        )
    check_finished(run_dir)
    run_abs, out_abs = os.path.realpath(run_dir), os.path.realpath(out_dir)
    if os.path.commonpath([run_abs, out_abs]) == run_abs:
        raise ParameterError(f"--out {out_dir} is the run folder {run_dir} or inside it: export to another folder")
    meta = read_meta(run_dir)
    card = cards.run_card(run_dir, name=name, license=license)  # every question answered before a file is written

    def write(folder: str) -> None:
        export(
            run_dir,
            folder,
            embedding=meta["embedding"],
            task=meta["task"],
            window=meta["window"],
            note=meta.get("note", ""),
        )
        cards.write_card(folder, card)
        shutil.copy(os.path.join(folder, "MODEL.md"), os.path.join(folder, "README.md"))

    write_folder_atomic(out_dir, write, overwrite=overwrite, what="bundle")
    return card


def load_head(path: str, *, compile: bool = True) -> Any:
    """Load a saved head: the one loader behind training resume, evaluation, export and tagging.

    Registers tagger's custom layers (and the fine-tuning trunk's) first, so
    a fresh process loads any run folder, bundle or checkpoint without
    importing anything else.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.keras`` file, or a folder holding ``model.keras`` (run folder or bundle).
    compile : bool
        Restore the optimizer too (resuming); False for inference and export.

    Returns
    -------
    keras.Model

    Raises
    ------
    DataError
        No such file, or not a loadable model (the reason is in the message).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.exists(path):
        raise DataError(f"{path}: no saved head")
    _check_archive(path)
    import keras

    from . import finetune, layers  # noqa: F401 - register the custom layers and the fine-tuning trunk's, for loading

    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)  # no code runs from a bundle
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise DataError(f"{path}: cannot load the head ({exc})") from exc


def _check_archive(path: str) -> None:
    """Refuse a ``.keras`` file that is not a whole zip archive (a copy or download cut short), saying so: Keras's
    own message for it is "File not found"."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        bad = f"{type(exc).__name__}: {exc}"
    if bad is not None:
        raise DataError(
            f"{path}: a damaged or truncated model file ({bad}); copy or export it again (a Hub head: delete its"
            " folder in the Hugging Face cache, and it is fetched anew)"
        )


def _meta_bytes(path: str) -> bytes:
    """``bundle.json`` as hashed: without its model card, which never changes an output.

    A card is written after the rest (:func:`tagger.training.card.write_card`), so the
    file less its card serialises to the bytes it had before the card was added: a
    bundle keeps its hash when it gains a card.
    """
    with open(path, "rb") as f:
        raw = f.read()
    try:
        meta = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(meta, dict) or "card" not in meta:
        return raw
    meta.pop("card")
    return json.dumps(meta, indent=1).encode()


def content_hash(folder: str) -> str:
    """SHA-256 (first 16 hex digits) of what decides a head's output: model, labels, thresholds, bundle.json (less its card)."""
    digest = hashlib.sha256()
    for name in ("model.keras", "labels.json", "thresholds.json", "bundle.json"):
        path = os.path.join(folder, name)
        digest.update(name.encode())
        if not os.path.exists(path):
            continue
        if name == "bundle.json":
            digest.update(_meta_bytes(path))
            continue
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]
