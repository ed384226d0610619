"""Bad experiment configs: one table, each row refused by the validator and by the command, before any work."""

import re
import subprocess
import sys

import pytest
from helpers import SMALL_RUN, make_config, write_config

from tagger import cli
from tagger.exceptions import DataError, ParameterError
from tagger.training.config import DEFAULTS, ensemble_members, load_config

# (change to a valid config, what the error names); a "search" change goes through `tagger tune`
BAD = [
    # unknown keys and heads
    ({"optimiser": {}}, "unknown config key 'optimiser' (did you mean 'optimizer'?)"),
    ({"mixup_alpha": 0.4}, "unknown config key 'mixup_alpha' (did you mean 'mixup'?)"),  # the α of its Beta
    ({"mux": {"n_active": 4, "rates": 2}}, "unknown config key mux.'rates'"),
    ({"head": {"name": "transformer"}}, "unknown head"),
    ({"head": {"name": "dense", "depth": 3}}, "head.'depth'"),
    ({"head": {"name": "dense", "dropuot": 0.2}}, "head.'dropuot' for head 'dense' (did you mean head.'dropout'?)"),
    # values of the wrong type or out of range
    ({"optimizer": {"learning_rate": "0.01"}}, 'optimizer.learning_rate="0.01"'),
    ({"optimizer": {"learning_rate": -1}}, "optimizer.learning_rate=-1"),
    ({"optimizer": {"ema": 1}}, "optimizer.ema=1"),
    ({"optimizer": {"ema": 1.0}}, "optimizer.ema=1.0"),
    ({"head": {"name": "dense", "dropout": 1.5}}, "head.dropout=1.5"),
    ({"head": {"name": "dense", "hidden": "64"}}, 'head.hidden="64"'),
    ({"head": {"name": "dense", "standardize": "yes"}}, 'head.standardize="yes"'),
    ({"head": {"name": "dense", "members": 0}}, "head.members=0"),
    ({"head": {"name": "dense", "members": 3}, "batch_size": 8}, "batch_size=8 must be a multiple of head.members=3"),
    ({"mux": {"n_active": "512"}}, 'mux.n_active="512"'),
    ({"mux": {"rate": 0}}, "mux.rate=0"),
    ({"seed": "abc"}, 'seed="abc"'),
    ({"epochs": 0}, "epochs"),
    ({"epochs": True}, "epochs=true"),
    ({"window": 2.5}, "window=2.5"),
    ({"early_stopping": {"patience": -1}}, "early_stopping.patience=-1"),
    ({"reduce_lr": {"factor": 5}}, "reduce_lr.factor=5"),
    ({"reduce_lr": {"min_lr": "small"}}, 'reduce_lr.min_lr="small"'),
    ({"mixup": -0.2}, "mixup=-0.2"),
    ({"mixup": -0.5}, "mixup=-0.5"),
    ({"data": {"cv_folds": 1}}, "data.cv_folds=1"),
    ({"data": {"train_split": 3}}, "data.train_split=3"),
    # cross-family ensembles: members named, each a valid config over the ensemble's data and window
    ({"head": {"name": "ensemble", "members": {"a": {}}}}, 'head.members={"a": {}} must map at least two'),
    ({"head": {"name": "ensemble", "members": {"a": {}, "b": 3}}}, "head.members.b: 3 must be a config file path"),
    ({"head": {"name": "ensemble", "members": {"a": {}, "b b": {}}}}, "head.members.b b: a member name"),
    (
        {"head": {"name": "ensemble", "members": {"a": {}, "b": {"head": {"name": "dense", "dropout": 1.5}}}}},
        "head.members.b: config key head.dropout=1.5",
    ),
    ({"head": {"name": "ensemble", "members": {"a": {}, "b": {"window": 3}}}}, "head.members.b: window: an inline"),
    (
        {
            "head": {
                "name": "ensemble",
                "members": {"a": {}, "b": {"head": {"name": "ensemble", "members": {"c": {}, "d": {}}}}},
            }
        },
        "head.members.b: a member cannot itself be an ensemble",
    ),
    ({"head": {"name": "ensemble", "members": {"a": {}, "b": {}}, "select": "best"}}, 'head.select="best"'),
    ({"head": {"name": "ensemble", "members": {"a": {}, "b": {}}, "hidden": 8}}, "head.'hidden' for an ensemble"),
    (
        {
            "head": {
                "name": "ensemble",
                "members": {"a": {}, "b": {}},
                "select": "best_subset",
                "weights": {"a": 1, "b": 1},
            }
        },
        "head.weights: fixed weights go with",
    ),
    ({"head": {"name": "ensemble", "members": {"a": {}, "b": {}}, "weights": {"a": 1}}}, 'head.weights={"a": 1}'),
    ({"head": {"name": "ensemble", "members": {"a": {}, "b": {}}, "weights": {"a": 1, "b": 0}}}, "head.weights.b=0"),
    (
        {"head": {"name": "ensemble", "members": {"a": {}, "b": {}}}, "search": {"mixup": {"choices": [0.2]}}},
        "an ensemble is not searched as one",
    ),
    # search ranges (tagger tune)
    ({"search": {"head.hiden": {"choices": [8]}}}, "search.head.hiden"),
    ({"search": {"windw": {"low": 1, "high": 2}}}, "search.windw"),
    ({"search": {"optimizer.learning_rate": {"low": 0.1, "high": 0.01}}}, "search.optimizer.learning_rate"),
    ({"search": {"head.hidden": {"choices": []}}}, "search.head.hidden"),
    ({"search": {"head.dropout": {"low": 0.0, "high": 1.5}}}, "search.head.dropout"),
    ({"search": {"optimizer.learning_rate": {"low": 0.0, "high": 0.1, "log": True}}}, "search.optimizer.learning_rate"),
    ({"search": {"mixup": {"low": 0.0}}}, "search.mixup"),
]


@pytest.fixture
def data(tmp_path):
    """A dataset folder whose files exist (their contents are read only when training starts)."""
    folder = tmp_path / "data"
    (folder / "cache").mkdir(parents=True)
    for name in ("index.csv", "vocab.json"):
        (folder / name).write_text("")
    return folder


def config_with(data, change):
    change = dict(change)
    return make_config(data, data=change.pop("data", None), **{**SMALL_RUN, **change})


def test_the_base_config_is_valid(data, tmp_path):
    """So that each row below fails for its own change."""
    assert load_config(str(write_config(tmp_path / "ok.json", config_with(data, {}))))["name"] == "small"


@pytest.mark.parametrize("change,named", BAD, ids=[n for _, n in BAD])
def test_a_bad_config_is_refused_before_any_work(data, tmp_path, capsys, change, named):
    path = write_config(tmp_path / "bad.json", config_with(data, change))
    with pytest.raises(ParameterError, match=re.escape(named)):
        load_config(str(path))
    command, folder = ("tune", "--study-dir") if "search" in change else ("train", "--run-dir")
    out = tmp_path / "out"
    assert cli.main([command, str(path), folder, str(out)]) == cli.EXIT_ERROR
    assert named in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.integration
def test_the_command_exits_1_with_the_reason_and_writes_nothing(data, tmp_path):
    """The same refusal from the installed command, in its own process (no runs/ folder appears)."""
    write_config(tmp_path / "cfg.json", config_with(data, {"mux": {"rate": 0}}))
    result = subprocess.run(
        [sys.executable, "-m", "tagger", "train", "cfg.json"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1 and "mux.rate=0" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "runs").exists()


def test_an_ensemble_member_file_must_exist_and_share_the_data_and_window(data, tmp_path):
    member = write_config(tmp_path / "member.json", config_with(data, {"window": 3}))
    ensemble = {"head": {"name": "ensemble", "members": {"a": {}, "b": str(member)}}}
    path = write_config(tmp_path / "e.json", config_with(data, ensemble))
    with pytest.raises(ParameterError, match=r"head.members.b: its window \(3\) differs from the ensemble's \(10\)"):
        load_config(str(path))
    ensemble["head"]["members"]["b"] = str(tmp_path / "nowhere.json")
    path = write_config(tmp_path / "e.json", config_with(data, ensemble))
    with pytest.raises(DataError, match="head.members.b: .*nowhere.json: no such config file"):
        load_config(str(path))
    # a member file with the same data and window is a member like an inline one
    write_config(tmp_path / "member.json", config_with(data, {"head": {"name": "autopool", "hidden": 16}}))
    ensemble["head"]["members"]["b"] = str(member)
    cfg = load_config(str(write_config(tmp_path / "e.json", config_with(data, ensemble))))
    members = ensemble_members(cfg)
    assert list(members) == ["a", "b"] and members["b"]["head"]["name"] == "autopool"
    # an inline member takes the ensemble's other settings; its own head (the default one here)
    assert members["a"]["head"] == DEFAULTS["head"] and members["a"]["batch_size"] == SMALL_RUN["batch_size"]
    assert members["a"]["name"] == "small.a"
    assert cfg["head"]["select"] == "all" and cfg["head"]["weights"] is None


def test_the_config_checker_refuses_a_folder_or_unreadable_file_in_a_sentence(tmp_path, capsys):
    from tagger.training.config import main

    (tmp_path / "latin1.json").write_bytes(b'{"name": "caf\xe9"}')
    assert main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "a folder, not a config file" in err and "train.json" in err and "Traceback" not in err
    assert main([str(tmp_path / "latin1.json")]) == 1
    assert "unreadable config file" in capsys.readouterr().err
