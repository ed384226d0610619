"""Starter configs: what ``tagger prepare`` writes beside an index, so ``tagger train FOLDER`` needs no hand-written config.

The rule (:func:`starter_config`), from what the cache holds and how many clips the training split has:

==================================  ===================================================================
the cache holds (its registry Kind) head and settings
==================================  ===================================================================
one row per clip (features)         ``mlp`` (64 units, 2 layers, dropout 0.3), one patch per sample
patches of 2-d rows (melspec)       ``cnn4``, windows of 3 patches
embeddings, < 1000 clips (VGGish)   ``dense`` (256 units, 2 layers, dropout 0.5): few clips, few weights
embeddings, >= 1000 clips           ``attention`` (256 units, 2 layers, dropout 0.5): best on AudioSet's
                                    music and genre vocabularies in ``experiments/README.md``
==================================  ===================================================================

Every config: the task the adapter found, windows of 10 patches (embeddings), batches of 32 under
1000 training clips and 64 from there, ``steps_per_epoch`` two passes over the training clips (10 to
100), 40 epochs with early stopping on the validation split (patience 8 under 1000 clips, else 6),
Adam at 1e-3, seed 0. Data paths are relative to the prepared folder, so the folder can move; ``tagger
train FOLDER`` reads them from there (:func:`load_starter`).
"""

import glob
import json
import math
import os

from ..embedding import registry
from ..exceptions import DataError
from ..records import write_json_atomic
from .config import load_config, validate
from .dataset import originals, read_index

__all__ = ["STARTER", "starter_config", "write_starter", "find_starter", "load_starter"]

#: the starter config's file name in a prepared folder (AudioSet's, one per vocabulary: ``train_<vocabulary>.json``)
STARTER = "train.json"
#: training clips from which an embedding head is an attention head rather than a dense one
LARGE = 1000


def starter_config(*, name, index, cache, vocabulary, task, n_train, kind=None):
    """The starter config of a prepared dataset, by the rule of this module.

    Parameters
    ----------
    name : str
        The config's name (the default run folder is ``runs/<name>``).
    index, cache, vocabulary : str
        Paths as the config holds them (relative to the prepared folder).
    task : {'multilabel', 'singlelabel'}
    n_train : int
        Clips in the training split.
    kind : str, optional
        What the cache holds (default :func:`tagger.embedding.registry.default_kind`): a registered kind (:func:`tagger.embedding.registry.kinds`) (``raw`` or ``postprocessed``
        embeddings, ``features``, ``melspec`` patches).

    Returns
    -------
    dict
        A config that :func:`tagger.training.config.validate` accepts (paths unchecked).
    """
    kind = registry.stored_kind(kind)
    if kind not in registry.kinds():
        raise DataError(f"kind={kind!r} must be one of {registry.kinds()}")
    if n_train < 1:
        raise DataError(f"{index}: no clip in the training split; a head cannot be trained")
    small = n_train < LARGE
    batch = 32 if small else 64
    spec = registry.kind(kind)
    if spec.per_clip:  # one row per clip (features)
        head, window = {"name": "mlp", "hidden": 64, "n_layers": 2, "dropout": 0.3}, 1
    elif len(spec.row_shape) == 2:  # each row a spectrogram patch
        head, window = {"name": "cnn4"}, 3
    elif small:
        head, window = {"name": "dense", "hidden": 256, "n_layers": 2, "dropout": 0.5}, 10
    else:
        head, window = {"name": "attention", "hidden": 256, "n_layers": 2, "dropout": 0.5}, 10
    cfg = {
        "name": name,
        "data": {
            "index": index,
            "cache": cache,
            "vocabulary": vocabulary,
            "task": task,
            "relative_to": "config",  # its paths are relative to its own folder: it trains from any working folder
        },
        "head": head,
        "window": window,
        "batch_size": batch,
        "epochs": 40,
        "steps_per_epoch": int(min(100, max(10, 2 * math.ceil(n_train / batch)))),
        "mux": {"n_active": int(min(256, n_train)), "rate": 4.0},
        "optimizer": {"name": "adam", "learning_rate": 1e-3},
        "early_stopping": {"patience": 8 if small else 6},
        "reduce_lr": {"factor": 0.5, "patience": 2, "min_lr": 1e-5},
        "seed": 0,
    }
    validate(json.loads(json.dumps(cfg)), check_paths=False)  # the rule never writes what `tagger train` refuses
    return cfg


def write_starter(folder, *, index, vocabulary, task, kind=None, cache="cache", file_name=STARTER):
    """Write the starter config of a prepared folder beside its index.

    ``index``, ``vocabulary`` and ``cache`` are paths inside ``folder``; the
    number of training clips is read from the index (its ``split`` column,
    augmented copies not counted). A config already there is kept as it is
    (it may hold your edits; delete it to have it written afresh).

    Returns
    -------
    path : str or None
        The config (None: no training clip, so no config).
    written : bool
        False when an existing config was kept.
    """
    path = os.path.join(folder, file_name)
    if os.path.exists(path):
        return path, False
    df = read_index(index)
    train = originals(df[df["split"] == "train"] if "split" in df.columns else df)
    if not len(train):
        return None, False  # nothing to train on yet (a prepared index of absent clips): no config to start from
    base = os.path.basename(os.path.normpath(folder))
    stem = os.path.splitext(file_name)[0]
    cfg = starter_config(
        name=base if stem == "train" else f"{base}_{stem.removeprefix('train_')}",
        index=os.path.relpath(index, folder),
        cache=os.path.relpath(os.path.join(folder, cache), folder),
        vocabulary=os.path.relpath(vocabulary, folder),
        task=task,
        n_train=len(train),
        kind=kind,
    )
    write_json_atomic(cfg, path)
    return path, True


def find_starter(folder):
    """The starter config of a prepared folder: ``train.json``, or its only ``train_*.json``."""
    path = os.path.join(folder, STARTER)
    if os.path.exists(path):
        return path
    found = sorted(glob.glob(os.path.join(glob.escape(folder), "train_*.json")))
    if len(found) == 1:
        return found[0]
    if found:
        raise DataError(f"{folder}: several starter configs; name one: {', '.join(found)}")
    raise DataError(
        f"{folder}: no starter config ({STARTER}); prepare the folder with `tagger prepare`, or give a config"
    )


def load_starter(path):
    """Read a starter config, its data paths (relative to its folder) made relative to the working folder; validated."""
    return load_config(path, relative_to="config")  # also those written before starters said so themselves
