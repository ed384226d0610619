"""The model registry: VGGish's kinds as they were, and a toy model registered here running the whole loop."""

import ast
import json
import pathlib

import numpy as np
import pytest
from helpers import write_audio

from tagger.embedding import audio, cache, extractor, registry
from tagger.embedding.pipeline import TrackResult
from tagger.exceptions import DataError, ParameterError

TOY_RATE, TOY_WINDOW = 8000, 0.5
ROOT = pathlib.Path(__file__).resolve().parents[1]


class ToyExtractor:
    """Four numbers per 0.5-s window of 8 kHz audio: level (dB), mean, peak and zero-crossing rate."""

    kind = "toy"
    pca_id = None
    postprocessor = None
    dtype = "float32"
    network_id = "toy-v1"

    def __init__(self, *, hop_seconds=TOY_WINDOW, short_policy="pad"):
        self.hop_seconds, self.short_policy = hop_seconds, short_policy
        self.frontend = {"sample_rate": TOY_RATE, "window_seconds": TOY_WINDOW, "hop_seconds": hop_seconds}

    def embed(self, y, sr):
        n, hop = int(TOY_WINDOW * sr), int(self.hop_seconds * sr)
        y = np.pad(y, (0, max(0, n - len(y))))
        starts = range(0, len(y) - n + 1, hop)
        rows = [
            (20 * np.log10(np.sqrt(np.mean(w**2)) + 1e-6), w.mean(), np.abs(w).max(), np.mean(np.diff(w > 0) != 0))
            for w in (y[s : s + n] for s in starts)
        ]
        return np.asarray(rows, np.float32), np.asarray([s / sr for s in starts])

    def finalize(self, values):
        return values

    def settle(self, paths):
        pass

    def iter_files(self, paths, *, workers=None, raw=False):
        for i, path in enumerate(paths):
            y = audio.load(path, sample_rate=TOY_RATE)
            values, times = self.embed(y, TOY_RATE)
            yield TrackResult(i, str(path), values, times, len(y) / TOY_RATE)


TOY = registry.Model(
    name="toy",
    kinds=(registry.Kind("toy", "toy", (4,), "float32", "four toy numbers per 0.5 s (a test's model)"),),
    sample_rate=TOY_RATE,
    window_seconds=TOY_WINDOW,
    hop_seconds=TOY_WINDOW,
    frontend=lambda: ToyExtractor().frontend,
    weights=(),
    licence="CC0-1.0",
    make=lambda kind, **options: ToyExtractor(**options),
    options=("hop_seconds", "short_policy"),
)


@pytest.fixture
def toy():
    registry.register(TOY)
    yield TOY
    registry.unregister("toy")


def test_the_built_in_kinds_are_vggish_features_patches_and_musicnn(capsys):
    networks = ("musicnn-mtt", "musicnn-msd", "vgg-mtt", "vgg-msd")
    assert registry.models() == ("vggish", "features", "melspec", *networks)
    musicnn = [f"{n}:{layer}" for n in networks[:2] for layer in ("max_pool", "mean_pool", "penultimate")]
    assert registry.kinds() == (
        "raw",
        "postprocessed",
        "features",
        "melspec",
        *musicnn,
        "vgg-mtt:pool5",
        "vgg-msd:pool5",
    )
    assert [registry.kind(f"musicnn-msd:{k}").row_shape for k in ("max_pool", "penultimate")] == [(753,), (200,)]
    assert registry.kind("vgg-mtt:pool5").row_shape == (256,) and registry.kind("vgg-mtt:pool5").model == "vgg-mtt"
    raw, post = registry.kind("raw"), registry.kind("postprocessed")
    assert raw.row_shape == post.row_shape == (128,) and (raw.dtype, post.dtype) == ("float32", "uint8")
    assert post.served_by == "raw" and post.pca and not post.cast
    assert registry.kind("features").per_clip and registry.kind("features").precision == "float64"
    assert registry.kind("melspec").fits(np.zeros((3, 96, 64)), {"num_frames": 96})
    assert not registry.kind("melspec").fits(np.zeros((3, 95, 64)), {"num_frames": 96})
    assert not raw.fits(np.zeros((0, 128))) and not raw.fits(np.zeros((2, 127))) and raw.fits(np.zeros((2, 128)))
    from tagger import cli

    with pytest.raises(ParameterError, match=r"kind='patches' must be one of \('raw', 'postprocessed'"):
        registry.kind("patches")
    assert cli.main(["models"]) == cli.EXIT_OK  # the models listed from their specs
    listed = capsys.readouterr().out
    assert (
        "  vggish: raw (T>0, 128) float32, postprocessed (T>0, 128) uint8; 16000 Hz; weights: TF1 checkpoint" in listed
    )
    assert "  features: features (1, D>0) float32; 22050 Hz; no weights" in listed


def test_register_refuses_what_would_make_the_registry_ambiguous(toy):
    with pytest.raises(ParameterError, match="model 'toy' is registered already"):
        registry.register(TOY)
    stolen = registry.Model(**{**vars(TOY), "name": "thief", "kinds": (registry.Kind("raw", "thief", (4,), "f4", ""),)})
    with pytest.raises(ParameterError, match="kind 'raw' belongs to model 'vggish' already"):
        registry.register(stolen)
    with pytest.raises(ParameterError, match="kind 'toy' names model 'toy', not 'other'"):
        registry.register(registry.Model(**{**vars(TOY), "name": "other"}))
    with pytest.raises(ParameterError, match="batchsize: no registered model takes such a setting"):
        extractor.make("toy", batchsize=8)


def test_a_registered_toy_model_embeds_prepares_trains_and_tags(toy, tmp_path):
    """One Model and the loop runs: embed -> prepare (reusing the cache) -> train -> tag, from cache and afresh."""
    from tagger.datasets import folder
    from tagger.embedding.embed import embed_files
    from tagger.tagging.api import Tagger
    from tagger.training.config import validate
    from tagger.training.train import train

    clips = tmp_path / "clips"
    for i in range(8):  # two separable classes: quiet low tones, loud high ones
        write_audio(clips / "quiet" / f"q{i}.wav", 2.0, sr=TOY_RATE, freq=200 + 10 * i, amplitude=0.02, seed=i)
        write_audio(clips / "loud" / f"l{i}.wav", 2.0, sr=TOY_RATE, freq=1500 + 10 * i, amplitude=0.8, seed=i)
    made = extractor.make("toy")
    assert isinstance(made, ToyExtractor) and isinstance(made, extractor.Extractor)
    out = tmp_path / "data"
    embedded = embed_files([str(clips)], out / "cache", extractor=made, workers=0, root=str(clips), progress=False)
    assert embedded["embedded"] == 16
    entry = cache.read_entry(str(cache.entry_path(out / "cache", "quiet/q0.wav")))
    assert entry["kind"] == "toy" and entry["embedding"].shape == (4, 4) and entry["provenance"]["kind"] == "toy"
    done = folder.prepare(
        str(clips), str(out), layout="genre", root=str(clips), extractor=made, workers=0, progress=False, valid=0.25
    )
    assert done["embedded"] == 0 and done["skipped"] == 16  # what embed cached serves prepare
    cfg = {
        "name": "toy",
        "data": {"index": done["index"], "cache": str(out / "cache"), "vocabulary": str(out / "vocab.json")}
        | {"task": "singlelabel"},
        "head": {"name": "dense", "hidden": 8, "n_layers": 1},
        "window": 3,
        "batch_size": 8,
        "epochs": 2,
        "steps_per_epoch": 4,
        "mux": {"n_active": 8, "rate": 2.0},
    }
    train(validate(cfg), str(tmp_path / "run"), verbose=0)
    meta = json.loads((tmp_path / "run" / "bundle.json").read_text())
    assert (
        meta["embedding"] == "toy" and meta["frontend"] == made.frontend and meta["provenance"]["weights"] == "toy-v1"
    )
    cached = Tagger(str(tmp_path / "run"), cache_dir=str(out / "cache")).tag([str(clips)], root=str(clips), top_n=2)
    fresh = Tagger(str(tmp_path / "run")).tag([str(clips)], root=str(clips), top_n=2)
    assert len(cached) == len(fresh) == 16 and not cached.attrs["errors"]
    assert set(cached["tag_1"]) <= {"quiet", "loud"}
    assert cached.equals(fresh)  # the cached toy entries give what the toy model gives afresh
    registry.unregister("toy")
    with pytest.raises((DataError, ParameterError), match="toy"):
        cache.read_entry(str(cache.entry_path(out / "cache", "quiet/q0.wav")))
    registry.register(TOY)


# Adding a model is one folder (or module) plus one registry line: outside the model modules nothing imports a
# model module, branches on a model or kind name, or writes an embedding size. Exempt, each for its reason:
MODEL_MODULES = registry.BUILT_IN  # each model's own module or folder
EXEMPT = {
    "tagger/embedding/registry.py": "names each built-in model's module in one line (BUILT_IN)",
    "tagger/datasets/audioset.py": "reads Google's released VGGish features (its frontend and hop are theirs)",
    "tagger/datasets/gtzan.py": "reads the GTZAN feature table, the features model's own values",
    "tagger/cli/features.py": "`tagger features`, the features model's own command",
    "tagger/training/finetune.py": "the fine-tuning trunk (reached through the registry's trunk hook)",
    "tagger/__init__.py": "the package's public names: the default model's Embedder and embed()",
    "tagger/testing.py": "writes VGGish weight fixtures in Google's official layout",
}
EMBEDDING_SIZES = (128,)  # VGGish's; a model's sizes belong in its own folder


def _module_name(rel):
    parts = pathlib.PurePath(rel).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree, name, is_package):
    """Every module an AST imports, relative imports resolved (``from . import x`` gives ``pkg.x`` too)."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = (base + "." + node.module if node.module else base) if node.level else node.module
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _constants(node):
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [n.value for n in items if isinstance(n, ast.Constant) and not isinstance(n.value, bool)]


def _findings(text, name, names, *, is_package=False):
    """What one module (its source ``text``, its dotted ``name``) does that only a model module may: import a model
    module, compare with a model or kind name or default to one, write an embedding size as a size default or in
    a shape."""
    tree = ast.parse(text)
    out = []
    for module in sorted(set(_imported(tree, name, is_package))):
        if any(module == m or module.startswith(m + ".") for m in MODEL_MODULES):
            out.append(f"imports {module}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                hit = [c for c in _constants(side) if isinstance(c, str) and c in names]
                if hit:
                    out.append(f"line {node.lineno} compares with {hit[0]!r}")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            positional = node.args.args
            defaults = [None] * (len(positional) - len(node.args.defaults)) + node.args.defaults
            for arg, default in zip(positional + node.args.kwonlyargs, defaults + node.args.kw_defaults):
                value = _constants(default)[0] if isinstance(default, ast.Constant) and _constants(default) else None
                if isinstance(value, str) and value in names:
                    out.append(f"line {node.lineno}: {arg.arg}={value!r} by default")
                sized = any(w in arg.arg for w in ("embedding", "size", "dim"))
                if sized and value in EMBEDDING_SIZES:
                    out.append(f"line {node.lineno}: {arg.arg}={value} by default")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("zeros", "empty", "ones", "reshape"):
            if any(c in EMBEDDING_SIZES for arg in node.args for c in _constants(arg)):
                out.append(f"line {node.lineno}: a shape with an embedding size")
    return out


@pytest.mark.unit
def test_no_module_outside_the_model_folders_knows_a_model():
    names = set(registry.models()) | set(registry.kinds())
    assert {"vggish", "raw", "postprocessed", "features", "melspec"} <= names
    found = {}
    for path in sorted((ROOT / "tagger").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        name = _module_name(rel)
        if rel in EXEMPT or any(name == m or name.startswith(m + ".") for m in MODEL_MODULES):
            continue
        hits = _findings(path.read_text(), name, names, is_package=path.stem == "__init__")
        if hits:
            found[rel] = hits
    assert not found, found


@pytest.mark.unit
def test_the_model_knowledge_check_finds_each_thing_it_looks_for():
    names = set(registry.models()) | set(registry.kinds())
    planted = (
        "from ..embedding.vggish import params\n"
        "from ..embedding import features\n"
        "def f(kind, *, embedding_size=128, other='melspec'):\n"
        "    '''(T, 128) in a docstring is fine; so is raw.'''\n"
        "    if kind == 'raw' or kind in ('features', 'x'):\n"
        "        return np.zeros((0, 128))\n"
    )
    found = sorted(_findings(planted, "tagger.training.planted", names))
    assert found == sorted(
        [
            "imports tagger.embedding.features",
            "imports tagger.embedding.vggish",
            "imports tagger.embedding.vggish.params",
            "line 5 compares with 'raw'",
            "line 5 compares with 'features'",
            "line 3: embedding_size=128 by default",
            "line 3: other='melspec' by default",
            "line 6: a shape with an embedding size",
        ]
    ), found
