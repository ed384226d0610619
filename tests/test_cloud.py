"""cloud/: command sequences with fake gcloud/gsutil, and the job runner killed and resumed."""

import json
import os
import pathlib
import pickle
import re
import shutil
import signal
import site
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import tagger

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOUD = os.path.join(ROOT, "cloud", "tagger-cloud")
RUNNER = os.path.join(ROOT, "cloud", "run_job.sh")

# `tagger-cloud submit` builds the wheel from the checkout (setuptools writes build/ there): one worker runs them all,
# with tests/test_project.py's install of the checkout
pytestmark = pytest.mark.xdist_group("builds-the-checkout")


# a config as `tagger-cloud submit` sees it: data paths are relative to the job's work folder (checked in the bucket)
CONFIG = {
    "data": {
        "index": "data/audioset/index_genre10.csv",
        "cache": "data/audioset/cache",
        "vocabulary": "data/audioset/vocab_genre10.json",
        "task": "singlelabel",
    }
}


def _bucket_data(tmp_path):
    """The config's data, as the bucket would hold it (tagger-cloud submit checks that it is there)."""
    for key in ("index", "cache", "vocabulary"):
        path = tmp_path / "gcs/bkt" / CONFIG["data"][key]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if key == "cache" else path.write_text("x")


def _not_ls(calls):
    return [c for c in calls if c["args"][:2] != ["storage", "ls"]]


def sh(args, env, check=True):
    return subprocess.run(["bash", *args], env=env, capture_output=True, text=True, check=check, timeout=120)


@pytest.mark.integration
def test_submit_sequence(fake, tmp_path):
    env, calls = fake
    config = tmp_path / "exp.json"
    config.write_text(json.dumps(CONFIG))
    _bucket_data(tmp_path)
    sh(
        [
            CLOUD,
            "submit",
            str(config),
            "job1",
            "--bucket",
            "gs://bkt",
            "--project",
            "proj",
            "--count",
            "2",
            "--accelerator",
            "nvidia-l4",
            "--machine-type",
            "g2-standard-24",
        ],
        env,
    )
    checked = [c["args"][2] for c in calls() if c["args"][:2] == ["storage", "ls"]]
    assert checked == [f"gs://bkt/{CONFIG['data'][k]}" for k in ("index", "cache", "vocabulary")]
    seq = _not_ls(calls())
    assert [c["args"][:2] for c in seq] == [["storage", "cp"]] * 3 + [["compute", "instances"]]
    assert seq[0]["args"][3] == "gs://bkt/jobs/job1/steps.json"  # the shorthand: one step, train CONFIG --run-dir run
    assert json.loads((tmp_path / "gcs/bkt/jobs/job1/steps.json").read_text()) == [
        ["train", "config.json", "--run-dir", "run"]
    ]
    assert seq[1]["args"][2:] == [str(config), "gs://bkt/jobs/job1/config.json"]
    assert seq[2]["args"][2].endswith(".whl") and seq[2]["args"][3] == "gs://bkt/jobs/job1/"  # the VM installs it
    create = seq[3]["args"]
    assert create[3] == "tagger-job1"
    for flag in (
        "--accelerator=type=nvidia-l4,count=2",
        "--machine-type=g2-standard-24",
        "--provisioning-model=SPOT",
        "--instance-termination-action=STOP",
        "--project=proj",
        f"--metadata-from-file=startup-script={RUNNER}",
        "--metadata=tagger-job=job1,tagger-bucket=gs://bkt,tagger-image=,install-nvidia-driver=True",
    ):
        assert flag in create, flag
    assert (tmp_path / "gcs/bkt/jobs/job1/config.json").exists()


@pytest.mark.integration
def test_on_demand_and_dry_run(fake, tmp_path):
    env, calls = fake
    config = tmp_path / "exp.json"
    config.write_text(json.dumps(CONFIG))
    _bucket_data(tmp_path)
    result = sh([CLOUD, "submit", str(config), "job2", "--bucket", "gs://bkt", "--on-demand", "--dry-run"], env)
    out = result.stdout
    assert _not_ls(calls()) == []  # nothing ran (the data paths were looked up)
    assert "submitted job2" not in result.stderr and "nothing was submitted" in result.stderr
    lines = out.strip().splitlines()
    assert lines[0].startswith("gcloud storage cp ") and lines[0].endswith("/steps.json gs://bkt/jobs/job2/steps.json")
    assert lines[1] == f"gcloud storage cp {config} gs://bkt/jobs/job2/config.json"
    assert " -m pip wheel --quiet --no-deps " in lines[2]
    assert lines[3].startswith("gcloud storage cp ") and lines[3].endswith(".whl gs://bkt/jobs/job2/")
    assert (
        lines[4].startswith("gcloud compute instances create tagger-job2 --zone=us-central1-a")
        and "SPOT" not in lines[4]
    )
    assert "1: tagger train config.json --run-dir run" in result.stderr  # the plan of steps


@pytest.mark.integration
def test_logs_fetch_delete_sequences(fake, tmp_path):
    env, calls = fake
    sh([CLOUD, "logs", "job1", "--zone", "europe-west4-a"], env)
    sh([CLOUD, "delete", "job1"], env)
    run_dir = tmp_path / "gcs/bkt/jobs/job1/run"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}")
    (tmp_path / "gcs/bkt/jobs/job1/status").write_text("succeeded exit=0\n")
    sh([CLOUD, "fetch", "job1", str(tmp_path / "results"), "--bucket", "gs://bkt"], env)
    seq = [c["args"] for c in calls()]
    assert seq[0][:3] == ["compute", "ssh", "tagger-job1"] and "--zone=europe-west4-a" in seq[0]
    assert any(a.startswith("--command=sudo journalctl -u google-startup-scripts") for a in seq[0])
    assert seq[1][:4] == ["compute", "instances", "delete", "tagger-job1"]
    assert seq[2] == ["storage", "rsync", "--recursive", "gs://bkt/jobs/job1", str(tmp_path / "results")]
    assert (tmp_path / "results/run/metrics.json").exists() and (tmp_path / "results/status").exists()


@pytest.mark.integration
@pytest.mark.parametrize(
    "args,message",
    [
        (["submit", "missing.json", "j", "--bucket", "gs://b"], "no such config"),
        (["submit", "CONFIG", "j"], "--bucket"),
        (["submit", "CONFIG", "bad/name", "--bucket", "gs://b"], "job name"),
        (["submit", "CONFIG", "j", "--bucket"], "--bucket needs a value"),
        (["submit", "CONFIG", "j", "--bucket", "--dry-run"], "--bucket needs a value"),
        (["submit", "CONFIG", "j", "--bucket", "gs://b", "--count", "abc"], "--count 'abc' must be a positive integer"),
        (
            ["submit", "CONFIG", "j", "--bucket", "gs://b", "--disk-gb", "-5"],
            "--disk-gb '-5' must be a positive integer",
        ),
        (["submit", "CONFIG", "j", "--bucket", "gs://b", "--disk-gb", "0"], "--disk-gb '0' must be a positive integer"),
        (["submit", "TYPO", "j", "--bucket", "gs://b"], "unknown config key 'epocs'"),
        (["submit", "BADVALUE", "j", "--bucket", "gs://b"], "optimizer.learning_rate=-0.1 must be a number > 0"),
        (["launch"], "unknown command"),
        (["logs", "j", "--frobnicate"], "unknown option"),
    ],
)
def test_bad_arguments(fake, tmp_path, args, message):
    """Bad options and bad configs fail before any gcloud call, with the option or config key named."""
    env, calls = fake
    configs = {
        "CONFIG": CONFIG,
        "TYPO": {**CONFIG, "epocs": 3},
        "BADVALUE": {**CONFIG, "optimizer": {"learning_rate": -0.1}},
    }
    for name, value in configs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(value))
    args = [str(tmp_path / f"{a}.json") if a in configs else a for a in args]
    result = subprocess.run(["bash", CLOUD, *args], env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert "unbound variable" not in result.stderr
    assert calls() == []  # fake gcloud recorded nothing


@pytest.mark.integration
def test_help_prints_the_help_only():
    result = subprocess.run(["bash", CLOUD, "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "submit CONFIG JOB" in result.stdout
    assert "set -euo pipefail" not in result.stdout and "here=" not in result.stdout


def job_bucket(tmp_path, audioset_data):
    """gs://bkt holding the genre10 data (index, vocabulary, its cache entries) and a small config."""
    data = tmp_path / "gcs/bkt/data/audioset"
    (data / "cache").mkdir(parents=True)
    index = pd.read_csv(audioset_data / "index_genre10.csv", dtype={"track_id": str})
    for name in ("index_genre10.csv", "vocab_genre10.json"):
        shutil.copy(audioset_data / name, data / name)
    for track_id in index["track_id"]:
        shutil.copy(audioset_data / "cache" / f"{track_id}.pkl", data / "cache" / f"{track_id}.pkl")
    config = {
        "data": {
            "index": "data/audioset/index_genre10.csv",
            "cache": "data/audioset/cache",
            "vocabulary": "data/audioset/vocab_genre10.json",
            "task": "singlelabel",
        },
        "head": {"name": "dense", "hidden": 32, "n_layers": 1, "dropout": 0.2},
        "batch_size": 32,
        "epochs": 8,
        "steps_per_epoch": 60,
        "mux": {"n_active": 64, "rate": 4.0},
        "early_stopping": {"patience": 20},
        "seed": 5,
    }
    for job in ("whole", "preempted"):
        (tmp_path / f"gcs/bkt/jobs/{job}").mkdir(parents=True)
        (tmp_path / f"gcs/bkt/jobs/{job}/config.json").write_text(json.dumps(config))


def runner_env(env, tmp_path, job, work):
    return {
        **env,
        "TAGGER_JOB": job,
        "TAGGER_BUCKET": "gs://bkt",
        "TAGGER_IMAGE": "",
        "TAGGER_WORK": str(work),
        "SYNC_SECONDS": "1",
        "SHUTDOWN_CMD": f"touch {tmp_path}/shutdown-{job}-{work.name}",
    }


@pytest.mark.slow
def test_runner_killed_and_restarted_resumes(fake, tmp_path, audioset_data):
    env, calls = fake
    job_bucket(tmp_path, audioset_data)
    whole = subprocess.run(
        ["bash", RUNNER],
        env=runner_env(env, tmp_path, "whole", tmp_path / "vm0"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]
    assert (tmp_path / "gcs/bkt/jobs/whole/status").read_text().startswith("succeeded")
    assert (tmp_path / "shutdown-whole-vm0").exists()
    expected = json.loads((tmp_path / "gcs/bkt/jobs/whole/run/metrics.json").read_text())

    # a spot VM: preempted (every process killed at once) once its second checkpoint, or a later one,
    # reached the bucket (the local folder keeps two, so an upload can land 0001 and 0003 and never 0002)
    proc = subprocess.Popen(
        ["bash", RUNNER],
        env=runner_env(env, tmp_path, "preempted", tmp_path / "vm1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    uploaded = tmp_path / "gcs/bkt/jobs/preempted/run/checkpoints"

    def second_checkpoint_uploaded():
        return any(int(p.stem.split("-")[1]) >= 2 for p in uploaded.glob("epoch-*.json"))

    deadline = time.time() + 600
    while not second_checkpoint_uploaded() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert second_checkpoint_uploaded()
    assert not (tmp_path / "gcs/bkt/jobs/preempted/status").exists()
    assert not (tmp_path / "gcs/bkt/jobs/preempted/run/metrics.json").exists()
    assert not (tmp_path / "shutdown-preempted-vm1").exists()

    # restarted on a fresh disk: everything comes from the bucket
    n_before = len(calls())
    again = subprocess.run(
        ["bash", RUNNER],
        env=runner_env(env, tmp_path, "preempted", tmp_path / "vm2"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "resuming from gs://bkt/jobs/preempted" in again.stdout
    resumed_calls = [c["args"] for c in calls()[n_before:]]
    skip = r"--exclude=(^|.*/)\.tmp-[^/]*$"  # writes in progress are never copied
    assert ["storage", "rsync", "--recursive", skip, "gs://bkt/data", str(tmp_path / "vm2/data")] in resumed_calls
    assert ["storage", "rsync", "--recursive", skip, "gs://bkt/jobs/preempted", str(tmp_path / "vm2")] in resumed_calls
    assert resumed_calls[-2][:2] == ["storage", "cp"] and resumed_calls[-2][-1] == "gs://bkt/jobs/preempted/status"
    history = pd.read_csv(tmp_path / "gcs/bkt/jobs/preempted/run/history.csv")
    assert list(history["epoch"]) == list(range(8))
    assert json.loads((tmp_path / "gcs/bkt/jobs/preempted/run/metrics.json").read_text()) == expected
    assert (tmp_path / "shutdown-preempted-vm2").exists()


@pytest.mark.integration
def test_runner_shuts_down_after_failure(fake, tmp_path):
    env, calls = fake
    (tmp_path / "gcs/bkt/jobs/broken").mkdir(parents=True)
    (tmp_path / "gcs/bkt/data").mkdir(parents=True)
    (tmp_path / "gcs/bkt/jobs/broken/config.json").write_text('{"data": {"index": "nowhere.csv"}}')
    result = subprocess.run(
        ["bash", RUNNER],
        env=runner_env(env, tmp_path, "broken", tmp_path / "vm"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert (tmp_path / "gcs/bkt/jobs/broken/status").read_text().startswith("failed")
    assert "nowhere.csv" in (tmp_path / "gcs/bkt/jobs/broken/log.txt").read_text()
    assert (tmp_path / "shutdown-broken-vm").exists()


@pytest.mark.integration
def test_shell_scripts_pass_bash_n_and_shellcheck():
    scripts = [CLOUD, RUNNER, os.path.join(ROOT, "cloud", "common.sh"), os.path.join(ROOT, ".ci", "run")]
    for script in scripts:
        subprocess.run(["bash", "-n", script], check=True)
    if shutil.which("shellcheck") is None:
        assert os.environ.get("CI") != "true", "CI must install shellcheck (.ci/run does)"
        pytest.skip("shellcheck is not installed here (.ci/run installs it)")
    result = subprocess.run(["shellcheck", "-x", *scripts], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout


def submit_job(env, tmp_path, shared, weights_dir, job):
    """The audio and weights in the bucket, then `submit JOB -- prepare -- train -- evaluate` from a local folder.

    The audio: the first 5 s of each of the ten GTZAN tracks, as .au files in the dataset's layout (what the job
    tests is the runner's steps, installs, syncs and signals; 50 patches instead of 310 for each `prepare`).
    """
    bucket = tmp_path / "gcs/bkt"
    if not (bucket / "audio/gtzan").exists():
        for track in sorted((shared / "data/gtzan/genres").glob("*/*.au")):
            y, sr = sf.read(str(track), dtype="int16")
            out = bucket / "audio/gtzan/genres" / track.parent.name / track.name
            out.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(out), y[: 5 * sr], sr, format="AU", subtype="PCM_16")
        shutil.copytree(shared / "data/gtzan/splits", bucket / "audio/gtzan/splits")
        (bucket / "data/vggish").mkdir(parents=True)
        shutil.copy(weights_dir / "v1/vggish_model.ckpt", bucket / "data/vggish/vggish_model.ckpt")
    here = tmp_path / "checkout"
    here.mkdir(exist_ok=True)
    config = {
        "data": {
            "index": "data/gtzan/index.csv",
            "cache": "data/gtzan/cache",
            "vocabulary": "data/gtzan/vocab.json",
            "task": "singlelabel",
        },
        "head": {"name": "dense", "hidden": 16, "n_layers": 1},
        "batch_size": 8,
        "epochs": 3,
        "steps_per_epoch": 4,
        "mux": {"n_active": 3, "rate": 2.0},
        "seed": 1,
    }
    (here / "small.json").write_text(json.dumps(config))
    steps = [
        "--",
        "prepare",
        "gtzan",
        "audio/gtzan/genres",
        "--out",
        "data/gtzan",
        "--weights",
        "data/vggish/vggish_model.ckpt",
        "--workers",
        "0",
        "--batch-size",
        "8",  # entries finish batch by batch: the SIGTERM falls between the first and the last
        "--no-progress",
        "--",
        "train",
        "small.json",
        "--run-dir",
        "run",
        "--quiet",
        "--",
        "evaluate",
        "run",
        "--split",
        "valid",
    ]
    result = subprocess.run(
        ["bash", CLOUD, "submit", job, "--bucket", "gs://bkt", *steps],
        env=env,
        cwd=here,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return bucket / "jobs" / job


def fresh_venv_with_the_dependencies(venv):
    """A new virtual environment that sees this one's packages (a .pth file), without this checkout's tagger."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    inner = subprocess.run(
        [str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    outer = [p for p in site.getsitepackages() if os.path.isdir(p)]
    # a path in a .pth file is searched after the environment's own site-packages, and its own .pth files (this
    # checkout's editable install among them) are not read: the wheel's tagger is the one found
    pathlib.Path(inner, "outer-dependencies.pth").write_text("\n".join(outer) + "\n")
    return venv


@pytest.mark.slow
def test_steps_job_installs_its_wheel_survives_sigterm_and_resumes(fake, tmp_path, shared, weights_dir):
    """prepare -> train -> evaluate through the real runner, tagger installed from the uploaded wheel into a fresh
    virtual environment; SIGTERM in the middle of `prepare`, a restart on a fresh work folder, the same results."""
    env, calls = fake
    venv = fresh_venv_with_the_dependencies(tmp_path / "venv")  # shared by the three VMs (one install)
    # the runner installs the wheel alone: its pinned dependencies are already there (no download of TensorFlow)
    env = {**env, "TAGGER_VENV": str(venv), "TAGGER_PIP_ARGS": "--no-deps"}
    whole = submit_job(env, tmp_path, shared, weights_dir, "whole")
    assert sorted(p.name for p in whole.iterdir()) == [
        "small.json",
        "steps.json",
        next(whole.glob("vggish_tagger-*.whl")).name,
    ]
    assert [c["args"][:3] for c in calls()][-1] == ["compute", "instances", "create"]
    done = subprocess.run(
        ["bash", RUNNER],
        env=runner_env(env, tmp_path, "whole", tmp_path / "vm0"),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "installing vggish_tagger-" in done.stdout and (venv / "bin/tagger").exists()
    # what ran is the wheel's copy of tagger, installed in the environment, not this checkout
    where = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import tagger, importlib.metadata as m; print(tagger.__file__)"
            "; print(m.version('vggish-tagger')); print(sorted(m.distribution('vggish-tagger').read_text('top_level.txt').split()))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert pathlib.Path(where[0]).is_relative_to(venv) and where[1] == tagger.__version__, where
    assert where[2] == "['tagger']", where
    assert (whole / "status").read_text().startswith("succeeded")
    assert sorted(p.name for p in (whole / "steps").iterdir()) == ["1.done", "2.done", "3.done"]
    expected_cache = {p.name: p.read_bytes() for p in (tmp_path / "gcs/bkt/data/gtzan/cache").rglob("*.pkl")}
    expected_run = json.loads((whole / "run/metrics.json").read_text())
    expected_eval = json.loads((whole / "run/eval/valid-head/metrics.json").read_text())

    # the same job again, preempted in the middle of `prepare` (a shutdown sends SIGTERM to every process)
    shutil.rmtree(tmp_path / "gcs/bkt/data/gtzan")
    preempted = submit_job(env, tmp_path, shared, weights_dir, "preempted")
    proc = subprocess.Popen(
        ["bash", RUNNER],
        env=runner_env(env, tmp_path, "preempted", tmp_path / "vm1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    cache_dir = tmp_path / "vm1/data/gtzan/cache"
    deadline = time.time() + 600
    # a finished entry (not a temporary .tmp-*.pkl still being written)
    while (
        not [p for p in cache_dir.rglob("*.pkl") if not p.name.startswith(".")]
        and time.time() < deadline
        and proc.poll() is None
    ):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert (preempted / "status").read_text().startswith("failed exit=143"), out[-2000:] + err[-2000:]
    log = (preempted / "log.txt").read_text()
    assert "terminated (SIGTERM); finished work is kept" in log and "leaked" not in log
    kept = {p: p.read_bytes() for p in (tmp_path / "gcs/bkt/data/gtzan/cache").rglob("*.pkl")}
    assert 0 < len(kept) < 10, len(kept)  # stopped inside the step, its finished entries copied back
    assert not (preempted / "steps").exists() or not list((preempted / "steps").iterdir())

    again = subprocess.run(
        ["bash", RUNNER],
        env=runner_env(env, tmp_path, "preempted", tmp_path / "vm2"),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "installing" not in again.stdout  # the VM's disk kept the environment
    assert all(p.read_bytes() == data for p, data in kept.items())  # finished entries were not redone
    assert {
        p.name: p.read_bytes() for p in (tmp_path / "gcs/bkt/data/gtzan/cache").rglob("*.pkl")
    }.keys() == expected_cache.keys()
    for name, data in expected_cache.items():
        a = pickle.loads(data)
        b = pickle.loads(next((tmp_path / "gcs/bkt/data/gtzan/cache").rglob(name)).read_bytes())
        np.testing.assert_allclose(a["embedding"], b["embedding"], atol=1e-5)
    assert json.loads((preempted / "run/metrics.json").read_text()) == expected_run
    assert json.loads((preempted / "run/eval/valid-head/metrics.json").read_text()) | {"run": None} == expected_eval | {
        "run": None
    }


@pytest.mark.integration
@pytest.mark.parametrize(
    "steps,message",
    [
        (["--", "frobnicate", "x"], "step 1 (frobnicate x): unknown tagger command"),
        (
            ["--", "tag", "audio/missing", "--out", "t.csv"],
            "step 1 (tag audio/missing --out t.csv): input audio/missing is not in gs://bkt/audio/missing",
        ),
        (["--", "train", "nope.json", "--run-dir", "run"], "input nope.json is not in gs://bkt/jobs/j/nope.json"),
        (
            ["--", "evaluate", "run", "--split", "valid", "--bogus"],
            "step 1 (evaluate run --split valid --bogus): unrecognized arguments: --bogus",
        ),
        (["--", "embed", "/abs/audio", "--out", "data/c"], "is absolute"),
        (
            ["--", "train", "nodata.json", "--run-dir", "run"],
            "config data.index data/audioset/index_genre10.csv is not in gs://bkt/data/audioset/index_genre10.csv",
        ),
        (
            ["--", "tag", "audio/x.wav", "--out", "t.csv"],
            "could not check input audio/x.wav at gs://bkt/audio/x.wav: gcloud said 'ERROR: (gcloud.storage.ls)"
            " There was a problem refreshing your current auth tokens'",
        ),
    ],
)
def test_bad_steps_fail_before_the_vm(fake, tmp_path, steps, message):
    env, calls = fake
    (tmp_path / "nodata.json").write_text(json.dumps(CONFIG))
    if "could not check" in message:  # gcloud fails for another reason than a missing object
        env = {
            **env,
            "FAKE_GCLOUD_ERROR": "ERROR: (gcloud.storage.ls) There was a problem refreshing your current auth tokens",
        }
    result = subprocess.run(
        ["bash", CLOUD, "submit", "j", "--bucket", "gs://bkt", *steps],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert all(c["args"][:2] == ["storage", "ls"] for c in calls())  # existence checks only: no upload, no VM


def test_a_job_plan_on_a_local_folder_standing_in_for_the_bucket(tmp_path, monkeypatch):
    """The unit tier's jobs test: inputs found in the bucket, made by an earlier step, or uploaded; what is refused."""
    from tagger import jobs
    from tagger.exceptions import ParameterError

    bucket, work = tmp_path / "bucket", tmp_path / "work"
    (bucket / "audio" / "clips").mkdir(parents=True)
    (bucket / "data").mkdir()
    for name in ("index_genre10.csv", "vocab_genre10.json"):
        (bucket / "data" / "audioset" / name).parent.mkdir(parents=True, exist_ok=True)
        (bucket / "data" / "audioset" / name).write_text("x")
    work.mkdir()
    config = {**CONFIG, "data": {**CONFIG["data"], "cache": "data/made"}}  # the cache: made by the first step
    (work / "cfg.json").write_text(json.dumps(config))
    steps = jobs.split_steps(
        ["embed", "audio/clips", "--out", "data/made", "--", "train", "cfg.json", "--run-dir", "run"]
        + ["--", "evaluate", "run", "--split", "valid"]
    )
    done = jobs.plan(steps, bucket=str(bucket), job="j", local_root=str(work))
    assert done["uploads"] == {str(work / "cfg.json"): f"{bucket}/jobs/j/cfg.json"}
    assert done["outputs"] == [["data/made"], ["run"], ["run"]]
    refused = {
        "audio/missing": f"step 1 (embed audio/missing --out c): input audio/missing is not in {bucket}/audio/missing",
        "/abs/audio": "input /abs/audio is absolute",
        "../up": "input ../up leaves the work folder",
    }
    for path, message in refused.items():
        with pytest.raises(ParameterError, match=re.escape(message)):
            jobs.plan([["embed", path, "--out", "c"]], bucket=str(bucket), job="j", local_root=str(work))
    with pytest.raises(ParameterError, match="unknown tagger command 'frobnicate'"):
        jobs.plan([["frobnicate"]], bucket=str(bucket), job="j")
    assert jobs.bucket_path("gs://b/", "j", "data/x") == "gs://b/data/x"
    assert jobs.bucket_path("gs://b", "j", "./run/m.keras") == "gs://b/jobs/j/run/m.keras"
