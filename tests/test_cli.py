"""Everyday use of the command line and the API: a quiet `tagger`, scripts without a main guard."""

import re
import subprocess
import sys
import textwrap

import pandas as pd

from conftest import write_audio

# TensorFlow's native start-up lines: glog lines, the absl banner, the CUDA probe, oneDNN
NATIVE = re.compile(r"^([IWE]\d{4} \S+ +\d+ \S+:\d+\]|WARNING: All log messages before absl)|cuInit|oneDNN", re.M)


def test_tag_prints_only_its_own_output(tmp_path, ckpt_path, pca_params):
    write_audio(tmp_path / "a.wav", 2.0)
    args = [sys.executable, "-m", "tagger", "tag", "a.wav", "--weights", ckpt_path, "--pca", str(pca_params),
            "--workers", "0", "--no-progress"]
    quiet = subprocess.run([*args, "--out", "q.csv"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert not NATIVE.search(quiet.stderr), quiet.stderr
    assert quiet.stdout.startswith("tagged 1, skipped 0")
    verbose = subprocess.run([args[0], "-m", "tagger", "-v", *args[3:], "--out", "v.csv"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert verbose.returncode == 0 and NATIVE.search(verbose.stderr)  # -v shows them: the check above can fail


def test_script_without_a_main_guard_tags_every_file(tmp_path, ckpt_path, gtzan_files):
    """Decode workers re-run an unguarded script; tagger notices at once and decodes in the calling process."""
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(
        f"""
        import sys
        from tagger.predict import Tagger

        tagger = Tagger("genre10", weights={ckpt_path!r}, pca_params={str(gtzan_files[0].parents[4] / "vggish/vggish_pca_params.npz")!r})
        df = tagger.tag({[str(p) for p in gtzan_files[:3]]!r}, workers=2)
        df.to_csv("out.csv", index=False)
        print("errors", df.attrs["errors"])
        """
    ))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "errors []" in result.stdout and len(pd.read_csv(tmp_path / "out.csv")) == 3
    assert "decoding in this process instead" in result.stderr and 'if __name__ == "__main__":' in result.stderr
