"""Start-up and memory of ``tagger tag`` on one clip: time to the first output row, wall time, peak memory.

    python benchmarks/startup.py [--weights CKPT|NPZ] [--repeats 3] [--precision auto]

Runs ``python -m tagger tag CLIP --out OUT.csv`` in a fresh process (nothing
warm: imports, weights, graph tracing and the head all count) and polls OUT
for its first data row. Peak memory is the child's maximum resident set
(``wait4``'s ``ru_maxrss``). Without --weights it writes random weights in the
official checkpoint layout, and also times their plain ``.npz`` export.
"""

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def one_run(cmd, out, env):
    """Time one fresh ``tagger tag`` process; returns (first_row_s, wall_s, peak_mib)."""
    if os.path.exists(out):
        os.unlink(out)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if first is None and os.path.exists(out):
            with open(out) as f:
                if len(f.read().splitlines()) >= 2:
                    first = time.perf_counter() - t0
        if pid:
            break
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"tagger tag failed:\n{err[-2000:]}")
    return first if first is not None else wall, wall, usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", action="append", default=None, help="repeatable (default: auto and float32)")
    ap.add_argument("--model", default="music")
    args = ap.parse_args()
    from statistics import median

    from common import make_clips

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tagger-startup-"))
    try:
        forms = {}
        if args.weights:
            forms[pathlib.Path(args.weights).name] = args.weights
        else:
            from tagger.embedding.vggish.network import export_weights
            from tagger.testing import random_weights, write_checkpoint

            ckpt = write_checkpoint(random_weights(0), str(tmp / "w" / "vggish_model.ckpt"), version=2)
            forms["checkpoint"] = ckpt
            export_weights(ckpt, str(tmp / "w" / "vggish.npz"))
            forms["plain .npz"] = str(tmp / "w" / "vggish.npz")
        clip = make_clips(tmp / "clips", 1)[0][0]
        pca = os.environ.get("TAGGER_VGGISH_PCA", str(ROOT.parent / "shared/vggish/vggish_pca_params.npz"))
        env = dict(os.environ)
        env.pop("TAGGER_PRECISION", None)
        print(f"tagger tag, one 30 s clip, model {args.model}, fresh process each, medians of {args.repeats}")
        print(f"{'weights':12s} {'precision':9s} {'first row s':>11s} {'wall s':>7s} {'peak MiB':>8s}")
        for form, weights in forms.items():
            for precision in args.precision or ["auto", "float32"]:
                out = str(tmp / "tags.csv")
                cmd = [sys.executable, "-m", "tagger", "tag", str(clip), "--model", args.model, "--weights", weights]
                cmd += ["--pca", pca, "--out", out, "--no-progress", "--overwrite", "--precision", precision]
                runs = [one_run(cmd, out, env) for _ in range(args.repeats)]
                first, wall, peak = (median([r[i] for r in runs]) for i in range(3))
                print(f"{form:12s} {precision:9s} {first:11.2f} {wall:7.2f} {peak:8.0f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
