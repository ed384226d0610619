"""Experiment configs: defaults, validation, and the frozen form stored in a run folder.

A config is a JSON file (see ``experiments/``). Every key is checked before
any training starts: an unknown key, an unknown head, a missing path or a
vocabulary without tracks fails with the offending key or path named.
"""

import copy
import inspect
import json
import os

from .exceptions import DataError, ParameterError

__all__ = ["DEFAULTS", "load_config", "validate", "data_path"]

DEFAULTS = {
    "name": None,
    "data": {
        "index": None,  # track index (CSV or Parquet)
        "cache": None,  # embedding cache folder
        "vocabulary": None,  # JSON list of tag names
        "task": "multilabel",  # or "singlelabel"
        "train_split": "train",
        "valid_split": "valid",
        "test_split": "test",
        "cv_folds": 0,  # > 1: cross-validate over the index's `fold` column
    },
    # head: name plus its builder's settings (tagger.heads), and members (default 1) for an ensemble
    "head": {"name": "dense", "hidden": 256, "n_layers": 2, "dropout": 0.3},
    "window": 10,  # patches per training sample
    "batch_size": 64,
    "epochs": 30,
    "steps_per_epoch": 100,
    # weighting: "uniform", "inverse_sqrt_frequency" or "inverse_frequency"; draw: windows per mux draw (see tagger.streams)
    "mux": {"n_active": 256, "rate": 8.0, "weighting": "uniform", "draw": 1},
    "mixup": 0.0,  # Beta(alpha, alpha) mixup of training batches; 0: off
    # ema > 0: keep an exponential moving average of the weights (momentum `ema`) and train on from it
    # at every epoch's end, so validation, checkpoints and the best model all use the averaged weights
    "optimizer": {"name": "adam", "learning_rate": 1e-3, "ema": 0.0},
    "early_stopping": {"patience": 6},
    "reduce_lr": {"factor": 0.5, "patience": 2, "min_lr": 1e-5},
    "seed": 0,
}

_FREE_SECTIONS = {"head"}  # keys checked by the head builder itself
_PATH_KEYS = ("index", "cache", "vocabulary")


def _merge(defaults, given, where):
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if key not in defaults:
            raise ParameterError(f"unknown config key {where}{key!r}; valid keys: {', '.join(sorted(defaults))}")
        if isinstance(defaults[key], dict) and not isinstance(value, dict):
            raise ParameterError(f"config key {where}{key!r} must be a mapping")
        if key in _FREE_SECTIONS:
            out[key] = dict(value)
        elif isinstance(defaults[key], dict):
            out[key] = _merge(defaults[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def validate(config, *, base_dir="."):
    """Fill defaults, resolve data paths and check everything that can be checked without training.

    Returns
    -------
    dict
        The complete config, paths absolute.
    """
    from .heads import HEADS, TASKS, check_members
    from .streams import WEIGHTINGS

    cfg = _merge(DEFAULTS, config, "")
    data = cfg["data"]
    for key in _PATH_KEYS:
        if not data[key]:
            raise ParameterError(f"config key data.{key} is required")
        path = data_path(cfg, key, base_dir=base_dir)
        if not os.path.exists(path):
            raise DataError(f"config key data.{key}: {path} does not exist")
    if data["task"] not in TASKS:
        raise ParameterError(f"config key data.task={data['task']!r} must be one of {TASKS}")
    head = cfg["head"]
    if head.get("name") not in HEADS:
        raise ParameterError(f"config key head.name={head.get('name')!r}: unknown head; valid heads: {', '.join(sorted(HEADS))}")
    accepted = set(inspect.signature(HEADS[head["name"]]).parameters) - {"n_outputs", "task", "output_bias", "input_stats"}
    accepted.add("members")  # an ensemble of that head (tagger.heads.build_head)
    for key in head:
        if key != "name" and key not in accepted:
            raise ParameterError(f"unknown config key head.{key!r} for head {head['name']!r}; valid: {', '.join(sorted(accepted))}")
    members = head.get("members", 1)
    check_members(members, key="config key head.members")
    for key in ("window", "batch_size", "epochs", "steps_per_epoch"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ParameterError(f"config key {key}={cfg[key]!r} must be a positive integer")
    if cfg["batch_size"] % members:
        raise ParameterError(f"config key batch_size={cfg['batch_size']} must be a multiple of head.members={members} "
                             "(each member trains on an equal slice of every batch)")
    if cfg["mux"]["weighting"] not in WEIGHTINGS:
        raise ParameterError(f"config key mux.weighting={cfg['mux']['weighting']!r} must be one of {', '.join(WEIGHTINGS)}")
    if not isinstance(cfg["mux"]["draw"], int) or cfg["mux"]["draw"] < 1 or cfg["batch_size"] % cfg["mux"]["draw"]:
        raise ParameterError(f"config key mux.draw={cfg['mux']['draw']!r} must be a positive divisor of batch_size={cfg['batch_size']}")
    if cfg["mux"]["n_active"] < 1 or cfg["mux"]["rate"] <= 0:
        raise ParameterError(f"config key mux={cfg['mux']}: n_active must be >= 1 and rate > 0")
    ema = cfg["optimizer"]["ema"]
    if not isinstance(ema, (int, float)) or not 0 <= ema < 1:
        raise ParameterError(f"config key optimizer.ema={ema!r} must be in [0, 1) (0: off)")
    if not isinstance(cfg["mixup"], (int, float)) or cfg["mixup"] < 0:
        raise ParameterError(f"config key mixup={cfg['mixup']!r} must be a number >= 0 (0: off)")
    if cfg["optimizer"]["name"] not in ("adam", "sgd", "rmsprop", "adamw"):
        raise ParameterError(f"config key optimizer.name={cfg['optimizer']['name']!r} must be adam, adamw, sgd or rmsprop")
    return cfg


def data_path(cfg, key, *, base_dir="."):
    """A data path of the config, resolved now: ``~`` and ``$VARS`` expanded, relative to ``base_dir``.

    Configs keep paths as written, so a run folder can move between machines
    (a preempted VM resumes elsewhere) with its frozen config unchanged.
    """
    path = os.path.expanduser(os.path.expandvars(str(cfg["data"][key])))
    return path if os.path.isabs(path) else os.path.abspath(os.path.join(base_dir, path))


def load_config(path):
    """Read and validate a config file; relative data paths are taken from the working directory."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such config file")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as exc:
        raise ParameterError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ParameterError(f"{path}: a config is a JSON object")
    raw.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    return validate(raw)
