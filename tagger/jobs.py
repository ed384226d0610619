"""Cloud jobs as pipelines of ordinary ``tagger`` steps, checked before any machine is started.

A job is a list of steps, each a ``tagger`` command line (``prepare ...``,
``train ...``, ``evaluate ...``, ``tag ...``), run in order in a work folder
that mirrors the bucket: ``data/`` and ``audio/`` are the bucket's own, every
other path is the job's (``jobs/JOB/<path>``). ``cloud/tagger-cloud submit``
calls :func:`plan` (``python -m tagger.jobs plan``) to check every step with
the command's own argument parser and every input path (here, in the bucket,
or made by an earlier step) before it uploads anything or creates a VM; the
runner on the VM reads the same steps back (``python -m tagger.jobs steps``).
"""

import contextlib
import io
import json
import os
import shlex
import subprocess
import sys

from .cli import build_parser
from .exceptions import ParameterError
from .records import write_json_atomic
from .training.config import load_config

__all__ = ["split_steps", "plan", "bucket_path", "main"]

SHARED = ("data", "audio")  # folders of the bucket itself; every other path belongs to the job
# per command: which arguments name inputs (read) and outputs (written)
_INPUTS = {
    "prepare": ("source", "annotations", "splits"),
    "embed": ("inputs",),
    "tag": ("inputs",),
    "train": ("config",),
    "evaluate": ("target", "truth", "predictions", "map"),
}
_OUTPUTS = {
    "prepare": ("out",),
    "embed": ("out", "errors"),
    "tag": ("out", "taggram", "cache", "errors"),
    "train": ("run_dir",),
    "evaluate": ("out",),
}
_ALSO_INPUTS = ("weights", "pca")


def split_steps(argv):
    """``STEP -- STEP ...`` (each a tagger command line) -> list of argument lists."""
    steps, current = [], []
    for arg in argv:
        if arg == "--":
            if current:
                steps.append(current)
            current = []
        else:
            current.append(arg)
    if current:
        steps.append(current)
    return steps


def bucket_path(bucket, job, path):
    """Where a work-folder path lives in the bucket: ``data/``, ``audio/`` as they are, the rest under ``jobs/JOB/``."""
    path = os.path.normpath(path).replace(os.sep, "/")
    top = path.split("/", 1)[0]
    return f"{bucket.rstrip('/')}/{path}" if top in SHARED else f"{bucket.rstrip('/')}/jobs/{job}/{path}"


_ABSENT = ("matched no objects", "not found", "no urls matched", "does not exist")


def _in_bucket(url):
    """Whether ``url`` exists: True, False, or the reason it could not be checked (gcloud failed otherwise)."""
    if "://" not in url:  # a local folder standing in for the bucket
        return os.path.exists(url)
    try:
        done = subprocess.run(["gcloud", "storage", "ls", url], capture_output=True, text=True)
    except FileNotFoundError:
        raise ParameterError(f"cannot check {url}: the gcloud CLI is not installed here") from None
    if done.returncode == 0:
        return True
    said = done.stderr.strip()
    if not said or any(text in said.lower() for text in _ABSENT):
        return False
    return said.splitlines()[-1]


def _check_input(path, *, number, text, bucket, job, local_root, made, uploads, what="input"):
    """One input of a step: a bucket URL, an earlier step's output, a job file to upload, or in the bucket."""
    if path.startswith(("gs://", "https://")) or "://" in path:
        return  # a bucket URL or a hub handle: used as it is
    if os.path.isabs(path):
        raise ParameterError(
            f"step {number} ({text}): {what} {path} is absolute; paths are relative to the job's work"
            " folder (data/..., audio/..., or the job's own files)"
        )
    norm = os.path.normpath(path)
    if norm.startswith(".."):
        raise ParameterError(f"step {number} ({text}): {what} {path} leaves the work folder")
    if any(norm == m or norm.startswith(m + os.sep) for m in made):
        return
    top = norm.split(os.sep, 1)[0]
    local = os.path.join(local_root, norm)
    if top not in SHARED and os.path.isfile(local):
        uploads[local] = bucket_path(bucket, job, norm)
        return
    url = bucket_path(bucket, job, norm)
    found = _in_bucket(url)
    if found is True:
        return
    if found is not False:
        raise ParameterError(
            f"step {number} ({text}): could not check {what} {path} at {url}: gcloud said {found!r};"
            " fix the gcloud login or network and submit again"
        )
    raise ParameterError(
        f"step {number} ({text}): {what} {path} is not in {url},"
        f"{' not a file here,' if top not in SHARED else ''} and no earlier step makes it"
    )


def _parse(step, number):
    text = " ".join(step)
    if not step or step[0] not in _INPUTS:
        raise ParameterError(
            f"step {number} ({text}): unknown tagger command {step[0] if step else ''!r}; "
            f"a step is one of: {', '.join(_INPUTS)}"
        )
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args, extra = build_parser().parse_known_args(step)
    except SystemExit:
        problem = err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else "bad arguments"
        raise ParameterError(f"step {number} ({text}): {problem.replace('tagger: error: ', '')}") from None
    if extra and getattr(args, "runner", "local") == "local":
        raise ParameterError(f"step {number} ({text}): unrecognized arguments: {' '.join(extra)}")
    return args


def _values(args, names):
    out = []
    for name in names:
        value = getattr(args, name, None)
        if value:
            out.extend(value if isinstance(value, list) else [value])
    return [str(v) for v in out]


def plan(steps, *, bucket, job, local_root="."):
    """Check a job's steps; what to upload and run.

    Parameters
    ----------
    steps : list of list of str
    bucket : str
        ``gs://BUCKET`` (or a local folder standing in for one).
    job : str
    local_root : str
        Where relative paths of files to upload are found (the submitting folder).

    Returns
    -------
    dict
        ``steps`` (the argument lists), ``uploads`` (local path -> bucket URL of
        job files the steps read), ``outputs`` per step.

    Raises
    ------
    ParameterError
        The first bad step: an unknown command, arguments its parser refuses, an
        absolute path, or an input found neither here, nor in the bucket, nor
        among the outputs of an earlier step; the message names the step.
    """
    if not steps:
        raise ParameterError("a job needs at least one step: submit JOB --bucket gs://B -- STEP [-- STEP ...]")
    uploads, made, outputs = {}, [], []
    for number, step in enumerate(steps, 1):
        args = _parse(step, number)
        text = " ".join(step)
        command = step[0]
        if command == "train" and not args.run_dir:
            raise ParameterError(f"step {number} ({text}): give the run folder (--run-dir run), so a restart finds it")
        where = dict(
            number=number, text=text, bucket=bucket, job=job, local_root=local_root, made=made, uploads=uploads
        )
        for path in _values(args, _INPUTS[command] + _ALSO_INPUTS):
            _check_input(path, **where)
        if command == "train" and os.path.isfile(os.path.join(local_root, args.config)):
            try:  # the checks of `tagger train`; its data paths are checked below, where the job will find them
                cfg = load_config(os.path.join(local_root, args.config), check_paths=False)
            except Exception as exc:
                raise ParameterError(f"step {number} ({text}): {exc}") from exc
            check_config_data(cfg, **where)
        out = [os.path.normpath(p) for p in _values(args, _OUTPUTS[command])]
        if command == "tag":
            out += [
                os.path.normpath(p) + suffix
                for p in _values(args, ("out",))
                for suffix in (".meta.json", ".errors.tsv")
            ]
        if command == "evaluate" and not args.out and len(args.target) == 1 and not args.truth:
            out.append(os.path.normpath(args.target[0]))
        made.extend(out)
        outputs.append(out)
    return {"steps": steps, "uploads": uploads, "outputs": outputs}


def check_config_data(cfg, *, number=1, text="train", bucket, job, local_root=".", made=(), uploads=None):
    """A train config's data paths (index, cache, vocabulary): in the bucket, made by an earlier step, or uploaded.

    Raises
    ------
    ParameterError
        A path found nowhere, or one that could not be checked (gcloud failed otherwise), naming the config key.
    """
    for key in ("index", "cache", "vocabulary"):
        value = cfg["data"].get(key)
        if value:
            where = dict(bucket=bucket, job=job, local_root=local_root, made=list(made), uploads=uploads or {})
            _check_input(str(value), number=number, text=text, what=f"config data.{key}", **where)


def main(argv=None):
    """``python -m tagger.jobs plan --bucket B --job J --steps-out FILE -- STEP [-- STEP]`` | ``steps FILE`` | ``data --bucket B --job J CONFIG``.

    ``plan`` checks the steps (exit 1 with the problem on a bad one), writes
    them to FILE as JSON and prints one ``LOCAL<TAB>URL`` line per job file to
    upload; ``steps`` prints a steps file's steps shell-quoted, one per line.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["data"] and len(argv) == 6 and argv[1] == "--bucket" and argv[3] == "--job":
        try:  # `submit CONFIG JOB`: the one train step's data, where the job will look for it
            check_config_data(
                load_config(argv[5], check_paths=False), text=f"train {argv[5]}", bucket=argv[2], job=argv[4]
            )
        except ParameterError as exc:
            print(f"invalid job: {exc}", file=sys.stderr)
            return 1
        return 0
    if argv[:1] == ["steps"] and len(argv) == 2:
        with open(argv[1], encoding="utf-8") as f:
            for step in json.load(f):
                print(shlex.join(step))
        return 0
    head = argv[: argv.index("--")] if "--" in argv else argv
    if head[:1] != ["plan"] or any(k not in head for k in ("--bucket", "--job", "--steps-out")):
        print(
            "usage: python -m tagger.jobs plan --bucket B --job J --steps-out FILE -- STEP [-- STEP ...] | steps FILE",
            file=sys.stderr,
        )
        return 2
    bucket, job, out = (head[head.index(k) + 1] for k in ("--bucket", "--job", "--steps-out"))
    try:
        result = plan(split_steps(argv[len(head) :]), bucket=bucket, job=job)
    except ParameterError as exc:
        print(f"invalid job: {exc}", file=sys.stderr)
        return 1
    write_json_atomic(result["steps"], out)
    for local, url in result["uploads"].items():
        print(f"{local}\t{url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
