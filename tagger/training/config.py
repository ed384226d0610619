"""Experiment configs: defaults, validation, and the frozen form stored in a run folder.

A config is a JSON file (see ``experiments/``). Every key is checked before
any training starts, so before a run folder exists: an unknown key, a value
of the wrong type or out of its range (booleans are not numbers), an unknown
head, a missing path or a vocabulary without tracks fails with the offending
key and value named. ``python -m tagger.training.config CONFIG [--no-paths]`` runs the
same checks from the shell (``tagger-cloud submit`` does, before any cloud call).
"""

import copy
import difflib
import inspect
import json
import math
import os
import re
import sys

from ..embedding import registry
from ..exceptions import DataError, ParameterError, TaggerError
from .heads import BUILT_BY_TRAINING, HEADS, TASKS, check_members

__all__ = [
    "OPTIMIZERS",
    "DEFAULTS",
    "ENSEMBLE",
    "SELECTIONS",
    "load_config",
    "validate",
    "ensemble_members",
    "data_path",
    "main",
    "check_search",
    "with_values",
]

#: config name of each optimizer -> its class in keras.optimizers (training and fine-tuning build from this one list)
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}

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
        # relative index, cache and vocabulary paths are taken from the working folder, or from the config file's
        # own folder ("config": what `tagger prepare` writes, so its starter config trains from anywhere)
        "relative_to": "working_folder",
    },
    # head: name plus its builder's settings (tagger.training.heads), and members (default 1) for an ensemble
    "head": {"name": "dense", "hidden": 256, "n_layers": 2, "dropout": 0.3},
    "window": 10,  # patches per training sample
    "batch_size": 64,
    "epochs": 30,
    "steps_per_epoch": 100,
    # weighting: "uniform", "inverse_sqrt_frequency" or "inverse_frequency"; draw: windows per mux draw (see tagger.training.streams)
    "mux": {"n_active": 256, "rate": 8.0, "weighting": "uniform", "draw": 1},
    "mixup": 0.0,  # Beta(alpha, alpha) mixup of training batches; 0: off
    # ema > 0: keep an exponential moving average of the weights (momentum `ema`) and train on from it
    # at every epoch's end, so validation, checkpoints and the best model all use the averaged weights
    "optimizer": {"name": "adam", "learning_rate": 1e-3, "ema": 0.0},
    "early_stopping": {"patience": 6},
    "reduce_lr": {"factor": 0.5, "patience": 2, "min_lr": 1e-5},
    "seed": 0,
    # fine-tuning VGGish on a log-mel patch cache (tagger.training.finetune): name "vggish" puts the network under the
    # head; train: none | fc | conv4 | all; its weights step at learning_rate_scale x the head's learning rate
    "trunk": {"name": None, "weights": None, "train": "none", "learning_rate_scale": 0.1},
    # `tagger tune`: config key -> range, {"low": a, "high": b} (ints: an integer range; "log": true for a
    # log scale; "step" optional) or {"choices": [...]}; ignored by `tagger train` (see tagger.training.tune)
    "search": {},
}

#: head.name of a cross-family ensemble: members trained separately, each by its own config, then averaged
#: (tagger.training.ensemble); head.members maps member names to configs
ENSEMBLE = "ensemble"
#: how an ensemble chooses its members on the validation split: every member, or the best equally weighted subset
SELECTIONS = ("all", "best_subset")
_ENSEMBLE_KEYS = ("name", "members", "select", "weights")
# what every member shares with its ensemble: the data it is scored on, the windows it tags
_SHARED = ("data", "window")
_MEMBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

_FREE_SECTIONS = {"head", "search"}  # keys checked by the head builder, and by check_search
_PATH_KEYS = ("index", "cache", "vocabulary")


def _did_you_mean(key, valid, where=""):
    """`` (did you mean <where>'<nearest valid key>'?)`` for an unknown config key, or ``''`` where none is near."""
    near = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6) or [k for k in sorted(valid) if k in key]
    return f" (did you mean {where}{near[0]!r}?)" if near else ""


def _merge(defaults, given, where):
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if key not in defaults:
            raise ParameterError(
                f"unknown config key {where}{key!r}{_did_you_mean(key, defaults, where)}; valid keys: {', '.join(sorted(defaults))}"
            )
        if isinstance(defaults[key], dict) and not isinstance(value, dict):
            raise ParameterError(f"config key {where}{key!r} must be a mapping")
        if key in _FREE_SECTIONS:
            out[key] = dict(value)
        elif isinstance(defaults[key], dict):
            out[key] = _merge(defaults[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# key -> (check, what it must be); every value of a config is checked here before a run folder exists
_RULES = {
    "name": (lambda v: v is None or (isinstance(v, str) and v.strip() != ""), "a non-empty string"),
    "data.train_split": (lambda v: isinstance(v, str) and v != "", "a split name (string)"),
    "data.valid_split": (lambda v: isinstance(v, str) and v != "", "a split name (string)"),
    "data.test_split": (lambda v: isinstance(v, str) and v != "", "a split name (string)"),
    "data.cv_folds": (lambda v: _is_int(v) and (v == 0 or v >= 2), "0 (off) or an integer >= 2"),
    "window": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "epochs": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "steps_per_epoch": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "mux.n_active": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "mux.rate": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "mux.draw": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "mixup": (lambda v: _is_number(v) and v >= 0, "a number >= 0 (0: off)"),
    "optimizer.learning_rate": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "optimizer.ema": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1) (0: off)"),
    "early_stopping.patience": (lambda v: _is_int(v) and v >= 1, "a positive integer (epochs)"),
    "reduce_lr.factor": (lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)"),
    "reduce_lr.patience": (lambda v: _is_int(v) and v >= 1, "a positive integer (epochs)"),
    "reduce_lr.min_lr": (lambda v: _is_number(v) and v >= 0, "a number >= 0"),
    "seed": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "trunk.weights": (lambda v: v is None or (isinstance(v, str) and v != ""), "null (the default weights) or a path"),
    "trunk.learning_rate_scale": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
}
_CHOICES = {
    "data.relative_to": ("working_folder", "config"),
    "optimizer.name": tuple(OPTIMIZERS),
    "trunk.train": ("none", "fc", "conv4", "all"),
}


def _trunk_models():
    """``trunk.name``'s choices: null, or a registered model with a fine-tuning hook (VGGish)."""
    return (None, *(name for name in registry.models() if registry.model(name).trunk is not None))


# head settings: ranges by name; types from the builder's defaults (tagger.training.heads)
_HEAD_RULES = {
    "hidden": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "n_layers": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "dropout": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "embedding_size": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
}
_BY_DEFAULT = {
    bool: (lambda v: isinstance(v, bool), "true or false"),
    int: (lambda v: _is_int(v), "an integer"),
    float: (lambda v: _is_number(v), "a number"),
}


def _get(cfg, key):
    value = cfg
    for part in key.split("."):
        value = value[part]
    return value


def _fail(key, value, what):
    raise ParameterError(f"config key {key}={json.dumps(value) if _jsonable(value) else repr(value)} must be {what}")


def _jsonable(value):
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def validate(config, *, base_dir=".", check_paths=True):
    """Fill defaults and check every value (types, ranges, choices, paths) without training.

    Parameters
    ----------
    config : dict
    base_dir : str
        Folder relative data paths are taken from.
    check_paths : bool
        Check that the data paths exist (off for a config that will run
        elsewhere, as ``tagger-cloud submit`` does).

    Returns
    -------
    dict
        The complete config.

    Raises
    ------
    ParameterError
        The first bad key, with its value and what it must be.
    DataError
        A data path that does not exist.
    """
    from .streams import WEIGHTINGS

    cfg = _merge(DEFAULTS, config, "")
    data = cfg["data"]
    for key in _PATH_KEYS:
        if not data[key] or not isinstance(data[key], str):
            raise ParameterError(f"config key data.{key} is required (a path), got {data[key]!r}")
        path = data_path(cfg, key, base_dir=base_dir)
        if check_paths and not os.path.exists(path):
            raise DataError(f"config key data.{key}: {path} does not exist")
    choices = {**_CHOICES, "data.task": TASKS, "mux.weighting": WEIGHTINGS, "trunk.name": _trunk_models()}
    for key, allowed in choices.items():
        if _get(cfg, key) not in allowed:
            _fail(key, _get(cfg, key), f"one of {', '.join(json.dumps(a) for a in allowed)}")
    for key, (check, what) in _RULES.items():
        if not check(_get(cfg, key)):
            _fail(key, _get(cfg, key), what)
    head = cfg["head"]
    if head.get("name") == ENSEMBLE:
        _check_ensemble(cfg, base_dir=base_dir, check_paths=check_paths)
        return cfg
    if head.get("name") not in HEADS:
        raise ParameterError(
            f"config key head.name={head.get('name')!r}: unknown head; valid heads:"
            f" {', '.join(sorted(HEADS))}, or {ENSEMBLE!r} (members trained separately, averaged)"
        )
    signature = inspect.signature(HEADS[head["name"]]).parameters
    accepted = set(signature) - set(BUILT_BY_TRAINING)
    accepted.add("members")  # an ensemble of that head (tagger.training.heads.build_head)
    for key, value in head.items():
        if key == "name":
            continue
        if key not in accepted:
            raise ParameterError(
                f"unknown config key head.{key!r} for head {head['name']!r}{_did_you_mean(key, accepted, 'head.')};"
                f" valid: {', '.join(sorted(accepted))}"
            )
        if key == "members":
            continue
        check, what = _HEAD_RULES.get(key) or _BY_DEFAULT.get(type(signature[key].default), (lambda v: True, ""))
        if not check(value):
            _fail(f"head.{key}", value, what)
    members = head.get("members", 1)
    check_members(members, key="config key head.members")
    if cfg["batch_size"] % members:
        raise ParameterError(
            f"config key batch_size={cfg['batch_size']} must be a multiple of head.members={members} "
            "(each member trains on an equal slice of every batch)"
        )
    if cfg["batch_size"] % cfg["mux"]["draw"]:
        raise ParameterError(
            f"config key mux.draw={cfg['mux']['draw']!r} must be a positive divisor of batch_size={cfg['batch_size']}"
        )
    if cfg["search"]:
        check_search(cfg)
    return cfg


def _check_ensemble(cfg, *, base_dir, check_paths):
    """The head section of an ensemble config: its keys, selection, weights and every member's config."""
    head = cfg["head"]
    for key in head:
        if key not in _ENSEMBLE_KEYS:
            raise ParameterError(
                f"unknown config key head.{key!r} for an ensemble{_did_you_mean(key, _ENSEMBLE_KEYS, 'head.')};"
                f" valid: {', '.join(_ENSEMBLE_KEYS)}"
            )
    select = head.setdefault("select", "all")
    if select not in SELECTIONS:
        _fail("head.select", select, f"one of {', '.join(json.dumps(s) for s in SELECTIONS)}")
    if cfg["search"]:
        raise ParameterError("config key search: an ensemble is not searched as one; tune each member's config")
    members = ensemble_members(cfg, base_dir=base_dir, check_paths=check_paths)
    weights = head.setdefault("weights", None)
    if weights is None:
        return
    if select != "all":
        raise ParameterError(f'config key head.weights: fixed weights go with head.select="all", not {select!r}')
    if not isinstance(weights, dict) or sorted(weights) != sorted(members):
        _fail("head.weights", weights, f"a mapping of every member ({', '.join(members)}) to a weight")
    for name, w in weights.items():
        if not _is_number(w) or w <= 0:
            _fail(f"head.weights.{name}", w, "a number > 0")


def ensemble_members(cfg, *, base_dir=".", check_paths=True):
    """The validated config of each member of an ensemble config, by member name.

    A member is given as a config file (a path, relative to ``base_dir`` as
    data paths are) or as a mapping of settings laid over the ensemble's own
    top-level settings (``{"head": {...}, "batch_size": 512}``). Every member
    trains and is scored on the ensemble's ``data`` and tags its ``window``,
    so a member file must state the same.

    Parameters
    ----------
    cfg : dict
        A config whose ``head.name`` is ``"ensemble"``.

    Returns
    -------
    dict
        Member name -> complete config (:func:`validate`), in the config's order.

    Raises
    ------
    ParameterError
        Fewer than two members, a bad member name or setting (named
        ``head.members.<name>``), a member that is itself an ensemble, or one
        whose data or window differ from the ensemble's.
    DataError
        A member config file that does not exist.
    """
    members = cfg["head"].get("members")
    if not isinstance(members, dict) or len(members) < 2:
        given = json.dumps(members) if _jsonable(members) else repr(members)
        raise ParameterError(
            f"config key head.members={given} must map at least two member names to their configs (a config file,"
            " or a mapping of settings)"
        )
    # what an inline member's settings are laid over: the ensemble's own, and the default head
    own = {**{k: v for k, v in cfg.items() if k not in ("head", "search", "name")}, "head": DEFAULTS["head"]}
    out = {}
    for name, spec in members.items():
        where = f"config key head.members.{name}"
        if not _MEMBER_NAME.match(str(name)):
            raise ParameterError(f"{where}: a member name names its run folder (letters, digits, '_', '.', '-')")
        try:
            if isinstance(spec, str):
                path = os.path.expanduser(os.path.expandvars(spec))
                member = load_config(os.path.join(base_dir, path), check_paths=check_paths)
            elif isinstance(spec, dict):
                shared = [k for k in spec if k in (*_SHARED, "name", "search")]
                if shared:
                    raise ParameterError(
                        f"{shared[0]}: an inline member takes data and window from its ensemble (its top level)"
                    )
                name_of = f"{cfg['name']}.{name}" if cfg.get("name") else str(name)
                member = validate(
                    {**_merge(own, spec, ""), "name": name_of}, base_dir=base_dir, check_paths=check_paths
                )
            else:
                raise ParameterError(f"{spec!r} must be a config file path or a mapping of settings")
        except TaggerError as exc:
            raise type(exc)(f"{where}: {exc}") from exc
        if member["head"]["name"] == ENSEMBLE:
            raise ParameterError(f"{where}: a member cannot itself be an ensemble")
        for key in _SHARED:
            if member[key] != cfg[key]:
                raise ParameterError(
                    f"{where}: its {key} ({json.dumps(member[key])}) differs from the ensemble's"
                    f" ({json.dumps(cfg[key])}); every member is scored on the same data and tags the same windows"
                )
        out[str(name)] = member
    return out


def _leaf_keys(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict) and key not in _FREE_SECTIONS:
            yield from _leaf_keys(value, f"{prefix}{key}.")
        elif key not in _FREE_SECTIONS:
            yield prefix + key


def _head_settings():
    keys = {"name", "members"}
    for builder in HEADS.values():
        keys |= set(inspect.signature(builder).parameters) - set(BUILT_BY_TRAINING)
    return keys


def with_values(cfg, values):
    """A copy of ``cfg`` with dotted keys set (``{"head.hidden": 64}``) and no ``search`` section."""
    out = copy.deepcopy(cfg)
    out["search"] = {}
    for key, value in values.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def check_search(cfg):
    """Check a config's ``search`` section: every key a config key, every range sound, every bound a valid value.

    Parameters
    ----------
    cfg : dict
        A config whose other keys are valid.

    Returns
    -------
    dict
        key -> ``("float" | "int", low, high, log, step)`` or ``("choice", choices)``.

    Raises
    ------
    ParameterError
        Naming the key: unknown key, a range without low/high or choices, low
        > high, an empty choice list, a log range not above 0, or a bound that
        is not a valid value of its key (``head.dropout`` up to 1.5).
    """
    search = cfg["search"]
    if not isinstance(search, dict):
        raise ParameterError("config key search must be a mapping of config keys to ranges")
    known = set(_leaf_keys(DEFAULTS)) - {
        "name",
        "data.index",
        "data.cache",
        "data.vocabulary",
        "data.task",
        "data.cv_folds",
        "data.train_split",
        "data.valid_split",
        "data.test_split",
    }
    heads = _head_settings()
    spaces = {}
    for key, spec in search.items():
        where = f"config key search.{key}"
        if key not in known and not (key.startswith("head.") and key[5:] in heads):
            raise ParameterError(
                f"{where}: not a searchable config key; searchable: {', '.join(sorted(known))},"
                f" head.<setting> ({', '.join(sorted(heads))})"
            )
        if not isinstance(spec, dict):
            raise ParameterError(f'{where}={spec!r} must be {{"low": a, "high": b}} or {{"choices": [...]}}')
        unknown = set(spec) - {"low", "high", "log", "step", "choices"}
        if unknown:
            raise ParameterError(
                f"{where}: unknown range settings {sorted(unknown)}; use low, high, log, step or choices"
            )
        if "choices" in spec:
            if set(spec) != {"choices"}:
                raise ParameterError(f"{where}: choices go alone, without low/high/log/step")
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise ParameterError(f"{where}.choices={choices!r} must be a non-empty list")
            if not all(v is None or isinstance(v, (bool, int, float, str)) for v in choices):
                raise ParameterError(f"{where}.choices={choices!r}: values must be numbers, strings, booleans or null")
            spaces[key] = ("choice", list(choices))
            bounds = choices
        else:
            if "low" not in spec or "high" not in spec:
                raise ParameterError(f"{where}={spec!r} needs low and high (or choices)")
            low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
            if not (_is_number(low) and _is_number(high)):
                raise ParameterError(f"{where}: low={low!r} and high={high!r} must be numbers")
            if low > high:
                raise ParameterError(f"{where}: low={low!r} is above high={high!r}")
            if not isinstance(log, bool):
                raise ParameterError(f"{where}.log={log!r} must be true or false")
            if log and low <= 0:
                raise ParameterError(f"{where}: a log range needs low > 0, got low={low!r}")
            if step is not None and (not _is_number(step) or step <= 0 or log):
                raise ParameterError(f"{where}.step={step!r} must be a number > 0, and not with log")
            kind = "int" if _is_int(low) and _is_int(high) and (step is None or _is_int(step)) else "float"
            spaces[key] = (kind, low, high, log, step)
            bounds = [low, high]
        for value in bounds:  # each bound must be a valid value of its key on this config
            try:
                validate(with_values(cfg, {key: value}), check_paths=False)
            except ParameterError as exc:
                raise ParameterError(f"{where}: the value {value!r} is not valid here ({exc})") from None
    return spaces


def data_path(cfg, key, *, base_dir="."):
    """A data path of the config, resolved now: ``~`` and ``$VARS`` expanded, relative to ``base_dir``.

    Configs keep paths as written, so a run folder can move between machines
    (a preempted VM resumes elsewhere) with its frozen config unchanged.
    """
    path = os.path.expanduser(os.path.expandvars(str(cfg["data"][key])))
    return path if os.path.isabs(path) else os.path.abspath(os.path.join(base_dir, path))


def load_config(path, *, check_paths=True, relative_to=None):
    """Read and validate a config file; relative data paths are taken from the working directory, or from the
    file's folder where its ``data.relative_to`` (or ``relative_to`` given here) is ``"config"`` (starter
    configs)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such config file")
    if os.path.isdir(path):
        raise DataError(
            f"{path}: a folder, not a config file; give its config (a prepared folder's is train.json, which"
            " `tagger train FOLDER` finds itself)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as exc:
        raise ParameterError(f"{path}: not valid JSON ({exc})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: unreadable config file ({exc})") from exc
    if not isinstance(raw, dict):
        raise ParameterError(f"{path}: a config is a JSON object")
    raw.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    data = raw.get("data")
    if isinstance(data, dict) and (relative_to or data.get("relative_to")) == "config":
        raw = {**raw, "data": relative_to_working_folder(data, os.path.dirname(os.path.abspath(path)))}
    return validate(raw, check_paths=check_paths)


def relative_to_working_folder(data, folder):
    """A config's ``data`` with its relative paths, written relative to ``folder``, made relative to the working
    folder (``relative_to`` becomes ``working_folder``: what a run folder freezes resolves from where it runs)."""
    data = dict(data, relative_to="working_folder")
    for key in _PATH_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value:
            value = os.path.expanduser(os.path.expandvars(value))
            if not os.path.isabs(value):
                data[key] = os.path.relpath(os.path.join(folder, value))
    return data


def main(argv=None):
    """``python -m tagger.training.config CONFIG [--no-paths]``: validate a config; exit 0, or 1 with the problem."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m tagger.training.config", description="Validate an experiment config."
    )
    parser.add_argument("config")
    parser.add_argument("--no-paths", action="store_true", help="do not check that the data paths exist here")
    args = parser.parse_args(argv)
    try:
        load_config(args.config, check_paths=not args.no_paths)
    except TaggerError as exc:
        print(f"{args.config}: invalid config: {exc}", file=sys.stderr)
        return 1
    print(f"{args.config}: valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
