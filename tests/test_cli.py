"""Everyday use of the command line and the API: a quiet `tagger`, scripts without a main guard."""

import re
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from helpers import make_config, write_audio

# TensorFlow's native start-up lines: glog lines, the absl banner, the CUDA probe, oneDNN
NATIVE = re.compile(r"^([IWE]\d{4} \S+ +\d+ \S+:\d+\]|WARNING: All log messages before absl)|cuInit|oneDNN", re.M)


def test_tag_prints_only_its_own_output(tmp_path, ckpt_path, pca_params):
    write_audio(tmp_path / "a.wav", 2.0)
    args = [
        sys.executable,
        "-m",
        "tagger",
        "tag",
        "a.wav",
        "--weights",
        ckpt_path,
        "--pca",
        str(pca_params),
        "--workers",
        "0",
        "--no-progress",
    ]
    quiet = subprocess.run([*args, "--out", "q.csv"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert not NATIVE.search(quiet.stderr), quiet.stderr
    assert quiet.stdout.startswith("tagged 1, skipped 0")
    verbose = subprocess.run(
        [args[0], "-m", "tagger", "-v", *args[3:], "--out", "v.csv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verbose.returncode == 0 and NATIVE.search(verbose.stderr)  # -v shows them: the check above can fail


@pytest.mark.slow
def test_script_without_a_main_guard_tags_every_file(tmp_path, ckpt_path, gtzan_files):
    """Decode workers re-run an unguarded script; tagger notices at once and decodes in the calling process."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            f"""
        import sys
        from tagger.tagging.api import Tagger

        tagger = Tagger("genre10", weights={ckpt_path!r}, pca_params={str(gtzan_files[0].parents[4] / "vggish/vggish_pca_params.npz")!r})
        df = tagger.tag({[str(p) for p in gtzan_files[:3]]!r}, workers=2)
        df.to_csv("out.csv", index=False)
        print("errors", df.attrs["errors"])
        """
        )
    )
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "errors []" in result.stdout and len(pd.read_csv(tmp_path / "out.csv")) == 3
    assert "decoding in this process instead" in result.stderr and 'if __name__ == "__main__":' in result.stderr


def test_evaluate_from_a_truth_file_equals_evaluating_the_prepared_dataset(
    tmp_path, shared, ckpt_path, gtzan_files, capsys, monkeypatch
):
    """`tagger evaluate --truth` (tagging now, or from a JSONL output) gives the run folder's own metrics."""
    import json

    from tagger import cli
    from tagger.cli import evaluate as evaluate_command

    genres = shared / "data/gtzan/genres"
    assert (
        cli.main(
            [
                "prepare",
                "gtzan",
                str(genres),
                "--out",
                str(tmp_path / "data"),
                "--weights",
                ckpt_path,
                "--workers",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    index = pd.read_csv(tmp_path / "data/index.csv")
    config = {
        **make_config(tmp_path / "data", data={"task": "singlelabel"}),
        "head": {"name": "dense", "hidden": 16, "n_layers": 1},
        "batch_size": 8,
        "epochs": 2,
        "steps_per_epoch": 3,
        "mux": {"n_active": 3, "rate": 2.0},
    }
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    run = tmp_path / "run"
    assert cli.main(["train", str(tmp_path / "cfg.json"), "--run-dir", str(run), "--quiet"]) == 0
    assert cli.main(["evaluate", str(run), "--split", "valid", "--out", str(tmp_path / "dataset-eval")]) == 0
    expected = json.loads((tmp_path / "dataset-eval/metrics.json").read_text())

    valid = index[index["split"] == "valid"]
    extra = index[index["split"] == "test"]["path"].tolist()  # tagged, but not in the truth file
    absent = str(genres / "pop/not-there.au")  # in the truth file, never tagged
    truth = pd.DataFrame(
        {
            "path": valid["path"].tolist() + [absent],
            "labels": [g if g != "blues" else "Blues|kazoo" for g in valid["labels"]] + ["pop"],
        }
    )
    truth.to_csv(tmp_path / "truth.csv", index=False)
    (tmp_path / "map.csv").write_text("truth,model\nBlues,blues\ntechno,Techno\n")
    common = ["--truth", str(tmp_path / "truth.csv"), "--map", str(tmp_path / "map.csv")]
    assert (
        cli.main(
            [
                "evaluate",
                "--model",
                str(run),
                *common,
                *valid["path"],
                *extra,
                "--weights",
                ckpt_path,
                "--workers",
                "0",
                "--no-progress",
                "--out",
                str(tmp_path / "tagged-eval"),
            ]
        )
        == 0
    )
    assert (
        cli.main(
            [
                "tag",
                *valid["path"],
                *extra,
                "--model",
                str(run),
                "--weights",
                ckpt_path,
                "--cache",  # the embeddings `prepare` cached (`evaluate` above tagged through the network)
                str(tmp_path / "data/cache"),
                "--workers",
                "0",
                "--no-progress",
                "--out",
                str(tmp_path / "tags.jsonl"),
            ]
        )
        == 0
    )
    assert (
        cli.main(
            ["evaluate", "--predictions", str(tmp_path / "tags.jsonl"), *common, "--out", str(tmp_path / "jsonl-eval")]
        )
        == 0
    )
    for name in ("tagged-eval", "jsonl-eval"):
        got = json.loads((tmp_path / name / "metrics.json").read_text())
        assert got["n_clips"] == expected["n_clips"] == len(valid)
        for key in ("accuracy", "macro_f1"):
            assert abs(got[key] - expected[key]) < 1e-9, (name, key)
        assert got["confusion"] == expected["confusion"]
        assert got["missing_from_predictions"] == [absent] and sorted(got["not_in_truth"]) == sorted(extra)
        assert got["unknown_tags"] == {"kazoo": 1}  # reported, not silently dropped
        assert got["mapping_to_unknown_tags"] == {"techno": "Techno"}
        per_tag = pd.read_csv(tmp_path / name / "per_tag.csv")
        assert per_tag["support"].sum() == len(valid)
    # another evaluation never replaces one silently; the same one reruns; --overwrite replaces
    again = ["evaluate", "--predictions", str(tmp_path / "tags.jsonl"), *common, "--out"]
    before = (tmp_path / "tagged-eval" / "metrics.json").read_bytes()
    assert cli.main([*again, str(tmp_path / "tagged-eval")]) == cli.EXIT_ERROR
    assert f"tagged-eval holds another evaluation (model {run} (" in capsys.readouterr().err
    assert (tmp_path / "tagged-eval" / "metrics.json").read_bytes() == before
    assert cli.main([*again, str(tmp_path / "jsonl-eval")]) == cli.EXIT_OK
    # refused before a clip is tagged: the model's evaluation into the folder of the predictions' one
    monkeypatch.setattr(evaluate_command, "tagger_from", lambda args: pytest.fail("tagged before the refusal"))
    tag_again = ["evaluate", *valid["path"], "--model", str(run), "--weights", ckpt_path, *common]
    assert cli.main([*tag_again, "--out", str(tmp_path / "jsonl-eval")]) == cli.EXIT_ERROR
    assert "jsonl-eval holds another evaluation (" in capsys.readouterr().err
    assert cli.main([*again, str(tmp_path / "tagged-eval"), "--overwrite"]) == cli.EXIT_OK
    assert json.loads((tmp_path / "tagged-eval" / "metrics.json").read_text())["predictions"].endswith("tags.jsonl")


def test_a_second_sigterm_does_not_interrupt_the_first():
    """The handler raises once, then ignores SIGTERM: the unwinding and its message are not cut short."""
    import signal

    from tagger.cli import startup

    previous = signal.signal(signal.SIGTERM, startup._terminated)
    try:
        with pytest.raises(KeyboardInterrupt):
            startup._terminated(signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


SIGTERM_DURING_THE_MESSAGE = """
import os, signal, sys, time
from tagger.cli import embed, main

def run(args):  # a command that gets SIGTERM in the middle of its work
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
    return 0

class Forwarded:  # the forwarded second SIGTERM arrives just as the message is written
    def write(self, text):
        os.kill(os.getpid(), signal.SIGTERM)
        return sys.__stderr__.write(text)
    def flush(self):
        sys.__stderr__.flush()

embed.run = run
os.makedirs("clips", exist_ok=True)  # the command's input, checked before it runs
sys.stderr = Forwarded()
sys.exit(main(["embed", "clips", "--out", "cache"]))
"""


@pytest.mark.integration
def test_a_second_sigterm_during_the_message_neither_kills_nor_silences_it(tmp_path):
    """A parent forwarding SIGTERM (cloud/run_job.sh) can land while the first one's message is written: it is
    ignored then too, so the message is in the log and the status is 143, never a silent death by the signal."""
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_DURING_THE_MESSAGE], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 143, (done.returncode, done.stderr[-2000:])
    assert "tagger embed: terminated (SIGTERM); finished work is kept, rerun to continue" in done.stderr


@pytest.mark.slow
def test_sigterm_is_handled_as_ctrl_c(tmp_path, ckpt_path):
    """A spot VM's shutdown sends SIGTERM to every process: the run stops cleanly and a rerun completes it."""
    import os
    import signal

    for i in range(30):
        write_audio(tmp_path / "clips" / f"c{i:02d}.wav", 3.0, freq=200.0 + 20 * i, seed=i)
    # batches of 8 patches (under three clips): entries are finished one batch after another, the signal among them
    args = [sys.executable, "-m", "tagger", "embed", "clips", "--weights", ckpt_path, "--batch-size", "8"]
    args += ["--workers", "1", "--no-progress"]
    proc = subprocess.Popen(
        [*args, "--out", "cache"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 180
    finished = lambda: [p for p in (tmp_path / "cache").rglob("*.pkl") if not p.name.startswith(".")]  # noqa: E731
    while not finished() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)  # the whole process group, as a shutdown does
    os.kill(proc.pid, signal.SIGTERM)  # and again, as a parent that forwards the signal (cloud/run_job.sh) does
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "terminated (SIGTERM); finished work is kept, rerun to continue" in err
    assert "leaked" not in err and "Traceback" not in err, err[-2000:]
    done = len(finished())
    assert 0 < done < 30 and not list((tmp_path / "cache").rglob(".tmp-*"))
    again = subprocess.run([*args, "--out", "cache"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and f"embedded {30 - done}, skipped {done}" in again.stdout, again.stderr[-2000:]
