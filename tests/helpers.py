"""Helpers the tests share (fixtures live in conftest.py): paths, synthetic audio, a head bundle, configs."""

import contextlib
import copy
import io
import json
import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings

import numpy as np
import pandas as pd
import soundfile as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("TAGGER_SHARED", ROOT.parent / "shared"))

HEAD_LABELS = ["rock", "jazz", "speech", "piano", "drums"]
GENRES = ["a", "b", "c"]

#: ``python -c KILLER ARGS...`` runs ``tagger ARGS...`` and SIGKILLs itself once the KILL_AFTER_EPOCH-th checkpoint
#: of a run is in place (a kill at the worst moment: the epoch's files just replaced)
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from tagger import cli
    real = os.replace
    seen = {"n": 0}
    def replace(src, dst):
        real(src, dst)
        if "checkpoints" in str(dst) and str(dst).endswith(".json"):
            seen["n"] += 1
            if seen["n"] == int(os.environ["KILL_AFTER_EPOCH"]):
                os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
    sys.exit(cli.main(sys.argv[1:]))
    """
)


#: ``python -c SEQUENCE JSON`` runs the ``tagger`` commands of the JSON list one after another in one process,
#: stopping at the first that fails (its exit status)
SEQUENCE = textwrap.dedent(
    """
    import json, sys
    from tagger import cli
    for args in json.loads(sys.argv[1]):
        status = cli.main(args)
        if status:
            sys.exit(status)
    """
)


def train_killed(config, run_dir, kill_after):
    """``tagger train CONFIG --run-dir RUN`` in its own process, SIGKILLed after ``kill_after`` checkpoints (:data:`KILLER`)."""
    return subprocess.run(
        [sys.executable, "-c", KILLER, "train", str(config), "--run-dir", str(run_dir), "--quiet"],
        env={**os.environ, "KILL_AFTER_EPOCH": str(kill_after)},
        capture_output=True,
        text=True,
        timeout=900,
    )


def write_head_bundle(folder, *, seed):
    """An (untrained) dense multi-label head over raw embeddings in the shipped bundle layout, in ``folder``."""
    import keras

    from tagger.training.heads import build_head

    keras.utils.set_random_seed(seed)
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    build_head("dense", len(HEAD_LABELS), "multilabel", hidden=16, n_layers=1).save(str(folder / "model.keras"))
    (folder / "labels.json").write_text(json.dumps(HEAD_LABELS))
    (folder / "thresholds.json").write_text(json.dumps({t: 0.5 for t in HEAD_LABELS}))
    (folder / "metrics.json").write_text("{}")
    (folder / "bundle.json").write_text(json.dumps({"embedding": "raw", "task": "multilabel", "window": 10}))
    return folder


#: 3000 bytes that no decoder reads as audio: no file header, and no 0xFF byte, so no MPEG frame sync can occur
#: (random bytes sometimes hold a run of decodable MP3 frames: a flaky "corrupt" file)
NOT_AUDIO = (bytes(range(1, 255)) * 12)[:3000]


def write_feature_dataset(folder, labels=GENRES):
    """A tiny separable feature dataset in ``folder`` (57-d rows, one class each of ``labels``), splits, five folds."""
    from tagger.embedding import cache, params

    folder = pathlib.Path(folder)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(90):
        x = rng.standard_normal((1, 57)) + 2.0 * np.eye(57)[i % len(labels)] * 3
        entry = cache.make_entry(
            x, [0.0], kind="features", frontend=params.feature_params(), weights=params.FEATURE_SET, source=f"t{i}"
        )
        cache.write_entry(folder / "cache", f"t{i:03d}", entry)
        split = ["train", "train", "valid"][(i // 3) % 3]
        rows.append(
            {"track_id": f"t{i:03d}", "path": "", "split": split, "labels": labels[i % len(labels)], "duration": 30.0}
            | {"fold": (i // 3) % 5}
        )
    pd.DataFrame(rows).to_csv(folder / "index.csv", index=False)
    (folder / "vocab.json").write_text(json.dumps(list(labels)))
    return folder


def write_audio(path, seconds, sr=16000, channels=1, freq=440.0, amplitude=0.5, seed=0, **kwargs):
    """Write a sine (plus a little noise) to ``path``; returns the path."""
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    y = amplitude * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(n)
    if channels > 1:
        y = np.stack([y * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y.astype(np.float32), sr, **kwargs)
    return path


#: the settings of a small, quick training run (the bad-config table and the AudioSet training tests start from it)
SMALL_RUN = {
    "name": "small",
    "head": {"name": "dense", "hidden": 128, "n_layers": 1, "dropout": 0.1},
    "batch_size": 64,
    "epochs": 4,
    "steps_per_epoch": 40,
    "mux": {"n_active": 128, "rate": 4.0},
    "early_stopping": {"patience": 2},
    "reduce_lr": {"factor": 0.5, "patience": 1, "min_lr": 1e-4},
    "seed": 3,
}


def make_config(folder, *, index="index.csv", cache="cache", vocabulary="vocab.json", data=None, **settings):
    """An experiment config over the prepared dataset in ``folder`` (as ``tagger prepare`` writes it).

    ``index``, ``cache`` and ``vocabulary`` name its files; ``data`` adds to the data section (``task``,
    ``cv_folds`` ...); every other setting is a top-level section or value of the config, given whole.
    """
    folder = pathlib.Path(folder)
    paths = {"index": str(folder / index), "cache": str(folder / cache), "vocabulary": str(folder / vocabulary)}
    # a deep copy: a test that changes a section of its config never changes SMALL_RUN for the next one
    return copy.deepcopy({"data": {**paths, **(data or {})}, **settings})


def write_config(path, config):
    """Write ``config`` as JSON to ``path``; returns the path."""
    path = pathlib.Path(path)
    path.write_text(json.dumps(config))
    return path


#: one statement per way a saved head is loaded, each run in a fresh interpreter with the folder as ``B``
ENTRY_POINTS = {
    "load_head": "from tagger.training.bundle import load_head; m = load_head(B)",
    "tagging": "from tagger.tagging.api import Head; m = Head(B).model",
    "export": "from tagger.training.bundle import export; import tempfile; from tagger.training.bundle import load_head;"
    " m = load_head(export(B, tempfile.mkdtemp(), embedding='raw', task='multilabel', window=10))",
    "training resume": "import tagger.training.runs, shutil, tempfile, os, json; d = tempfile.mkdtemp();"
    " shutil.copy(os.path.join(B, 'model.keras'), os.path.join(d, 'epoch-0001.keras'));"
    " json.dump({'epoch': 1}, open(os.path.join(d, 'epoch-0001.json'), 'w'));"
    " m = tagger.training.runs.latest_checkpoint(d)[0]",
}


def load_in_fresh_interpreter(entry, folders):
    """Load each head folder (name -> path) through one of :data:`ENTRY_POINTS` in a new process; name -> parameter count.

    The process imports only that entry point's module, so a head whose custom layers another module
    would register fails there.
    """
    body = ENTRY_POINTS[entry].replace("; ", "\n    ")
    paths = {name: str(path) for name, path in folders.items()}
    code = f"for name, B in {paths!r}.items():\n    {body}\n    print(name, m.count_params())"
    # the entry points that write a folder (export, training resume) write it under a TMPDIR removed afterwards
    with tempfile.TemporaryDirectory(prefix="tagger-entry-") as tmp:
        env = {**os.environ, "TMPDIR": tmp}
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
    counts = dict(line.split() for line in done.stdout.split("\n") if line.split()[:1] and line.split()[0] in paths)
    assert done.returncode == 0 and sorted(counts) == sorted(paths), done.stderr[-2000:]
    return {name: int(n) for name, n in counts.items()}


def _warning_to_stderr(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_in_process(args, *, cwd):
    """``tagger ARGS`` through ``tagger.cli.main`` in this process, in the folder ``cwd``; a CompletedProcess.

    For tests whose subject is not a process boundary: what a command writes, refuses and reuses. It saves the
    new interpreter, the TensorFlow import and the model build of a process (about 10 s against 2 s here).
    Kill, signal, exit-status-to-the-shell, fresh-interpreter and stderr-of-native-code behaviours stay in
    processes of their own.
    """
    from tagger import cli

    args = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            # warnings as a new process shows them: once per place, on stderr (pytest would record them instead)
            warnings.simplefilter("default")
            warnings.showwarning = _warning_to_stderr
            # log records on stderr, as `tagger`'s logging.basicConfig puts them (pytest's handlers keep it from
            # adding its own in this process)
            handler = logging.StreamHandler(sys.stderr)
            handler.setLevel(logging.WARNING)
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            logging.getLogger().addHandler(handler)
            try:
                status = cli.main(args)
            finally:
                logging.getLogger().removeHandler(handler)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["tagger", *args], status, out.getvalue(), err.getvalue())


def array_messages(index, path, *, n):
    """A decode worker's job (the pipeline's message contract) for the hand-over tests: ``n`` messages of arrays
    that differ by file and message, in the sizes and kinds a worker sends (patch audio of up to 79 patches, some
    larger than a slot; log-mel; float64), then done."""
    rng = np.random.default_rng(index)
    for k in range(n):
        rows = int(rng.integers(1, 80))
        shape = (rows, 15600) if k % 3 else (rows, 96, 64)
        dtype = np.float32 if k % 2 else np.float64
        yield ("patches", index, rng.standard_normal(shape).astype(dtype), np.arange(rows) * 0.96)
    yield ("done", index, float(n), [])


def crashing_messages(index, path, *, n):
    """:func:`array_messages`, except that the worker given the path ``"crash"`` dies (``os._exit``, as in a
    decoder's segfault) 10 ms after handing its sender a 128 MB message, in the middle of writing it (a pipe does
    not carry 128 MB in 10 ms)."""
    if path == "crash":
        yield ("patches", index, np.zeros((2048, 15600), np.float32), np.zeros(2048))
        time.sleep(0.01)
        os._exit(3)
    yield from array_messages(index, path, n=n)
