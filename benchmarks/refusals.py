"""How fast `tagger` refuses what it cannot do, and finds there is nothing to do: wall time and peak memory per case.

Each case is one `tagger` process (the CLI as a user runs it) on a prepared folder: a 3-s clip, random VGGish
weights in the official layout and an output tagged once before. The goal (issue 43): every refusal and every
nothing-to-do rerun within 3 s and 300 MB on the reference CPU, judged before Keras or the weights load; and `tag`
with every clip in the cache builds no network (it loads Keras for the head: its goal is no VGGish built). Prints
one line per case: exit status, wall seconds, peak resident memory (MB) of the process, whether TensorFlow was
imported, how many VGGish networks were built, the first line of its message; and the CPU.

    python benchmarks/refusals.py [--keep DIR]
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from common import cpu_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
GOAL_S, GOAL_MB = 3.0, 300

# the process reports its own peak memory and whether TensorFlow was imported, whatever its exit
PROBE = """
import atexit, sys
import tagger.embedding.vggish.network as vggish
built = []
def build_vggish(*args, _build=vggish.build_vggish, **kwargs):  # counts the networks built
    built.append(kwargs.get("name"))
    return _build(*args, **kwargs)
vggish.build_vggish = build_vggish
def report():  # VmHWM: this process's own peak (ru_maxrss would carry the launcher's across exec)
    with open("/proc/self/status") as f:
        peak = [int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:")][0]
    sys.stderr.write(f"\\nPROBE {peak:.0f} {'tensorflow' in sys.modules} {len(built)}\\n")
atexit.register(report)
from tagger.cli import main
sys.exit(main(sys.argv[1:]))
"""


def tagger(args, *, cwd, env=None, hold=None):
    """Run one `tagger` command; (exit, seconds, peak MB, TensorFlow imported, VGGish networks built, first message
    line)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - started
    probe = [line for line in done.stderr.splitlines() if line.startswith("PROBE ")]
    peak, tf, nets = probe[-1].split()[1:] if probe else ("?", "?", "?")
    lines = [
        line
        for line in (done.stderr + done.stdout).splitlines()
        if line.strip() and not line.startswith(("PROBE ", "I0000", "W0000", "E0000", "WARNING", "To enable"))
    ]
    errors = [line for line in lines if "error:" in line]  # argparse prints its usage first
    return done.returncode, seconds, peak, tf, nets, ((errors or lines or [""])[0])[:100]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", default=None, help="work in this folder (kept) instead of a temporary one")
    args = ap.parse_args()
    work = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="tagger-refusals-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        sys.path.insert(0, str(ROOT / "tests"))
        from helpers import write_audio

        from tagger import locks
        from tagger.testing import write_fixtures

        ckpt, pca = write_fixtures(str(work / "fixture"))
        env = {"TAGGER_VGGISH_WEIGHTS": os.path.abspath(ckpt), "TAGGER_VGGISH_PCA": os.path.abspath(pca)}
        os.environ.update(env)
        clip = write_audio(work / "clip.wav", 3.0)
        tag = ["tag", str(clip), "--model", "music", "--allow-other-embedding", "--no-progress", "--workers", "0"]
        first = tagger([*tag, "--out", "done.csv", "--cache", "cache"], cwd=work)
        print(f"set-up: tag once -> done.csv and cache/ (exit {first[0]}, {first[1]:.1f} s, {first[2]} MB)")
        subprocess.run(
            [sys.executable, "-m", "tagger", "weights", "export", ckpt, str(work / "w.npz")],
            check=True,
            capture_output=True,
        )

        (work / "truth.csv").write_text(f"path,labels\n{clip},Music\n")
        (work / "truth-eval").mkdir(exist_ok=True)  # another evaluation's folder: the default --out of truth.csv
        (work / "truth-eval" / "metrics.json").write_text(
            json.dumps({"truth": str(work / "truth.csv"), "predictions": str(work / "other.jsonl")})
        )
        cases = [
            ("tag: --out in use by another run", [*tag, "--out", "busy.csv"], {}, "busy.csv"),
            (
                "tag: another --top-n than the output was made with",
                [*tag, "--out", "done.csv", "--cache", "cache", "--top-n", "3"],
                {},
                None,
            ),
            ("tag: --batch-size 0", [*tag, "--out", "x.csv", "--batch-size", "0"], {}, None),
            ("tag: --workers -1", [*tag, "--out", "x.csv", "--workers", "-1"], {}, None),
            ("tag: --hop 0.005", [*tag, "--out", "x.csv", "--hop", "0.005"], {}, None),
            ("tag: TAGGER_PRECISION=bogus", [*tag, "--out", "x.csv"], {"TAGGER_PRECISION": "bogus"}, None),
            ("tag: KERAS_BACKEND=cntk", [*tag, "--out", "x.csv"], {"KERAS_BACKEND": "cntk"}, None),
            ("tag: a missing input file", ["tag", "nope.wav", "--model", "music", "--out", "x.csv"], {}, None),
            ("tag: a model that does not exist", ["tag", str(clip), "--model", "nope", "--out", "x.csv"], {}, None),
            ("weights export to .bin", ["weights", "export", ckpt, "w.bin"], {}, None),
            ("embed: missing --weights file", ["embed", str(clip), "--out", "c2", "--weights", "none.npz"], {}, None),
            (
                "evaluate --truth: --out holds another evaluation",
                ["evaluate", str(clip), "--truth", "truth.csv", "--model", "music", "--allow-other-embedding"],
                {},
                None,
            ),
            ("no-op: tag rerun, every clip done", [*tag, "--out", "done.csv", "--cache", "cache"], {}, None),
            (
                "no-op: embed rerun, every clip cached",
                ["embed", str(clip), "--out", "cache", "--no-progress"],
                {},
                None,
            ),
        ]
        # not a no-op (its clip is tagged): the head loads, the network must not
        cached = (
            "tag, every clip in the cache (new --out)",
            [*tag, "--out", "fresh.csv", "--cache", "cache"],
            {},
            None,
        )
        print(f"{'case':<52} {'exit':>4} {'wall s':>7} {'peak MB':>8} {'TF':>5} {'nets':>4}  message")
        over = []
        for name, argv, extra, busy in [*cases, cached]:
            if busy:
                with locks.exclusive(locks.output_lock_path(str(work / busy)), what="a benchmark's other run"):
                    result = tagger(argv, cwd=work, env=extra)
            else:
                result = tagger(argv, cwd=work, env=extra)
            code, seconds, peak, tf, nets, message = result
            print(f"{name:<52} {code:>4} {seconds:>7.2f} {peak:>8} {tf:>5} {nets:>4}  {message}")
            if name == cached[0]:
                if nets != "0":
                    over.append(name)
            elif seconds > GOAL_S or (peak != "?" and float(peak) > GOAL_MB):
                over.append(name)
        print(
            f"CPU: {cpu_model()}; {os.cpu_count()} cores. Goal {GOAL_S:g} s and {GOAL_MB} MB each (the"
            f" cached tag: no network built); missed: "
            f"{', '.join(over) if over else 'none'}"
        )
        if args.keep:
            print(json.dumps({"work": str(work)}))
    finally:
        if not args.keep:  # the fixture weights and caches come to about 550 MB a run
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
