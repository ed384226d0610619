"""The GPU check: tagger on Keras 3's JAX and PyTorch backends, on whatever device the machine has, without TensorFlow.

    bash benchmarks/gpu_check.sh [--quick] [--out DIR] [--backends jax,torch]

Made for a bare GPU machine that has PyTorch and JAX but no TensorFlow and no network: tagger runs from this
checkout, its few missing packages come from the wheels ``benchmarks/gpu_wheels.sh`` downloads beforehand, the
VGGish weights are random ones written as the plain ``.npz`` file (speed does not depend on their values) and the
clips are synthetic. Each backend runs in a process of its own (Keras fixes the backend at import), with
TensorFlow blocked from importing. It measures, per backend:

- VGGish network-only patches/s in float32, bfloat16 and float16 at batch 256 to 2048;
- ``tagger embed`` end to end (decode, frontend, network, cache write) with one decode worker per CPU core, with
  the reference frontend and with the device frontend, and where each one's limit is: decoding alone (with the
  reference frontend's log-mel, or only reading and resampling for the device frontend), the host-to-device
  transfer, or the network (with the device frontend: frontend + network); decoding alone is also timed on MP3
  copies of the clips at 16 kHz, as MagnaTagATune's clips are;
- a head's training steps/s (dense head, batch 512 x window 10);
- then the parity of JAX and PyTorch (embeddings, a head's outputs, a few training steps from the same weights),
  and the projected wall time of embedding all 25,863 MagnaTagATune clips with each frontend, from its slowest
  stage with MP3 decoding.

It prints one table and writes ``gpu_check.json`` (updated after every measurement, so a run cut short still
reports) to ``--out`` (default ``$OUT`` when set, else ``gpu_check/``). ``--quick`` is the rehearsal size: on a machine with
TensorFlow's stack and no GPU, ``python benchmarks/gpu_check.py --quick`` (the wheels are for the GPU
machine's Python 3.12).
"""

import argparse
import importlib.util
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MTT_CLIPS, MTT_SECONDS = 25_863, 29.1  # MagnaTagATune: clips, seconds each
SIZES = {  # quick: a CPU rehearsal in about 5 minutes; full: about 5 minutes on an H200
    "quick": {
        "clips": 8,
        "seconds": 10.0,
        "batches": (256,),
        "dtypes": ("float32", "bfloat16", "float16"),
        "min_s": 1.0,
    },
    "full": {
        "clips": 256,
        "seconds": 30.0,
        "batches": (256, 512, 1024, 2048),
        "dtypes": ("float32", "bfloat16", "float16"),
        "min_s": 2.0,
    },
}


class Report:
    """A JSON file rewritten atomically after every ``add``: what was measured so far survives a cut-short run."""

    def __init__(self, path, initial=None):
        self.path = pathlib.Path(path)
        self.data = dict(initial or {})
        self.write()

    def add(self, key, value):
        self.data[key] = value
        self.write()

    def append(self, key, value):
        self.data.setdefault(key, []).append(value)
        self.write()

    def write(self):
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)


def timed(fn, min_seconds):
    """Calls of ``fn`` (after one warm-up) until ``min_seconds`` have passed: (calls, seconds)."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return calls, elapsed


# ---------------------------------------------------------------- one backend, in its own process


def device_info(backend):
    import keras

    from tagger import backend as tb

    info = {"backend": backend, "keras": keras.__version__, "gpus": tb.gpus(), "capability": tb.gpu_capability()}
    if backend == "jax":
        import jax

        info |= {"jax": jax.__version__, "devices": [str(d) for d in jax.devices()]}
    elif backend == "torch":
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        info |= {"torch": torch.__version__, "devices": [name]}
    info["auto_precision"] = tb.auto_dtype()
    return info


def to_device_and_back(backend, batch):
    """One host -> device -> host round trip of a batch of patches (what the pipeline's transfer costs)."""
    if backend == "jax":
        import jax

        return lambda: np.asarray(jax.device_put(batch))
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return lambda: torch.from_numpy(batch).to(device).cpu().numpy()


def measure_network(part, weights, patches, size):
    from tagger.embedding.vggish.extractor import Embedder

    for dtype in size["dtypes"]:
        for batch in size["batches"]:
            emb = Embedder(str(weights), batch_size=batch, dtype=dtype, frontend_kind="reference")  # on log-mel
            chunk = patches[:batch]
            started = time.perf_counter()
            emb.run(chunk)  # compile
            compile_s = time.perf_counter() - started
            calls, seconds = timed(lambda e=emb, c=chunk: e.run(c), size["min_s"])
            part.append(
                "network",
                {"dtype": dtype, "batch": batch, "patches_per_s": round(calls * batch / seconds, 1)}
                | {"first_call_s": round(compile_s, 2)},
            )


def decode_rate(files, output, batch, workers):
    """Decoding alone: ``tagger embed``'s pipeline with a network that costs nothing; (clips/s, patches per clip).

    ``output``: what the workers send, ``'log_mel'`` (the reference frontend runs in them) or ``'audio'`` (they only
    read and resample; the device frontend runs with the network).
    """
    from tagger.embedding.pipeline import iter_embeddings
    from tagger.embedding.vggish.frontend import decode_messages, decode_options

    started = time.perf_counter()
    results = iter_embeddings(
        files,
        lambda p: np.zeros((len(p), 128), np.float32),
        target=decode_messages,
        target_options=decode_options(hop_seconds=0.96, short_policy="pad", output=output),
        row_shape=(128,),
        batch_size=batch,
        workers=workers,
    )
    n_patches = sum(len(r.embedding) for r in results)
    return len(files) / (time.perf_counter() - started), n_patches / len(files)


def stage_summary(rates, n_clips, wall_s):
    """One ``tagger embed`` run against the rates its stages alone sustain (clips/s): its own rate, the stages, the
    slowest one, and what that stage does not explain (starting the decode workers, compiling, the cache writes)."""
    return {
        "clips_per_s": round(n_clips / wall_s, 2),
        "stage_clips_per_s": {k: round(v, 2) for k, v in rates.items()},
        "limit": min(rates, key=rates.get),
        "overhead_s": round(wall_s - n_clips / min(rates.values()), 2),
    }


def measure_end_to_end(part, backend, weights, clips, work, size):
    from tagger.embedding.audio import load
    from tagger.embedding.embed import embed_files
    from tagger.embedding.vggish.extractor import Embedder
    from tagger.embedding.vggish.params import PATCH_SAMPLES

    workers = os.cpu_count()
    best = max(part.data["network"], key=lambda r: r["patches_per_s"])
    emb = Embedder(str(weights), batch_size=best["batch"], dtype=best["dtype"], frontend_kind="reference")
    emb.run(np.zeros((best["batch"], 96, 64), np.float32))
    started = time.perf_counter()
    summary = embed_files(clips, work / f"cache-{backend}", extractor=emb, workers=workers, overwrite=True)
    e2e_s = time.perf_counter() - started
    if summary["failed"]:
        raise RuntimeError(f"tagger embed failed on {summary['failed']} synthetic clips")
    # decoding alone, per format (WAV at 22,050 Hz, resampled; MP3 at 16 kHz mono, as MagnaTagATune's clips are) and
    # per what the workers send (the reference frontend's log-mel, or the device frontend's patch audio)
    mp3s = sorted(str(p) for p in (work / "clips").glob("*.mp3"))
    decode = {
        (fmt, output): decode_rate(files, output, best["batch"], workers)
        for fmt, files in (("wav", clips), ("mp3", mp3s))
        if files
        for output in ("log_mel", "audio")
    }
    per_clip = decode[("wav", "log_mel")][1]
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((best["batch"], 96, 64)).astype(np.float32)
    calls, seconds = timed(to_device_and_back(backend, batch), size["min_s"])
    rates = {  # clips per second each stage alone could sustain
        "decode + frontend": decode[("wav", "log_mel")][0],
        "transfer": calls * best["batch"] / seconds / per_clip,
        "network": best["patches_per_s"] / per_clip,
    }
    # the device frontend (tagger embed --frontend device): the same run with the log-mel on the network's device,
    # its stages, and its float32 embeddings of the first clip against the reference frontend's (within 1e-4)
    dev = Embedder(str(weights), batch_size=best["batch"], dtype=best["dtype"], frontend_kind="device")
    audio = (0.1 * rng.standard_normal((best["batch"], PATCH_SAMPLES))).astype(np.float32)
    dev.run(audio)
    started = time.perf_counter()
    summary = embed_files(clips, work / f"cache-{backend}-device", extractor=dev, workers=workers, overwrite=True)
    device_s = time.perf_counter() - started
    if summary["failed"]:
        raise RuntimeError(f"tagger embed --frontend device failed on {summary['failed']} synthetic clips")
    calls, seconds = timed(to_device_and_back(backend, audio), size["min_s"])
    net_calls, net_seconds = timed(lambda: dev.run(audio), size["min_s"])
    device_rates = {
        "decode": decode[("wav", "audio")][0],
        "transfer": calls * best["batch"] / seconds / per_clip,
        "frontend + network": net_calls * best["batch"] / net_seconds / per_clip,
    }
    y = load(str(clips[0]), sample_rate=16000)
    want = Embedder(str(weights), batch_size=64, dtype="float32").embed(y, 16000)[0]
    have = Embedder(str(weights), batch_size=64, dtype="float32", frontend_kind="device").embed(y, 16000)[0]
    device_frontend = {
        **stage_summary(device_rates, len(clips), device_s),
        "float32_difference": float(np.max(np.abs(have - want)) / np.max(np.abs(want))),
    }
    part.add(
        "end_to_end",
        {
            "device_frontend": device_frontend,
            "clips": len(clips),
            "clip_seconds": size["seconds"],
            "workers": workers,
            "dtype": best["dtype"],
            "batch": best["batch"],
            **stage_summary(rates, len(clips), e2e_s),
            # decoding alone, clips/s: "wav log_mel", "wav audio", "mp3 log_mel", "mp3 audio" (no mp3: no writer)
            "decode_clips_per_s": {f"{fmt} {output}": round(r[0], 2) for (fmt, output), r in decode.items()},
        },
    )


def measure_training(part, size):
    import keras

    from tagger.training.heads import build_head

    keras.utils.set_random_seed(0)
    model = build_head("dense", 50, "multilabel", hidden=512, n_layers=2)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 10, 128)).astype(np.float32)
    m, y = np.ones((512, 10), np.float32), (rng.random((512, 50)) < 0.1).astype(np.float32)
    calls, seconds = timed(lambda: model.train_on_batch((x, m), y), size["min_s"])
    part.add(
        "training",
        {"head": "dense 2 x 512, 50 tags", "batch": 512, "window": 10, "steps_per_s": round(calls / seconds, 1)},
    )


def parity_dump(part, weights, patches, work, out):
    """What the other backend must reproduce: embeddings, a head's outputs, losses of a few SGD steps."""
    import keras

    from tagger.embedding.vggish.extractor import Embedder
    from tagger.training import layers  # noqa: F401 - registers tagger's layers, for loading the other's head
    from tagger.training.heads import build_head

    fixed = patches[:64]
    embeddings = Embedder(str(weights), batch_size=64, dtype="float32").run(fixed)
    head_file = work / "parity_head.keras"  # built once by the first backend, loaded by the others
    if not head_file.exists():
        keras.utils.set_random_seed(0)
        build_head("dense", 10, "multilabel", hidden=32, n_layers=1, dropout=0.0).save(str(head_file))  # no randomness
    head = keras.models.load_model(str(head_file), compile=False)
    x = np.stack([embeddings[i : i + 8] for i in range(0, 64, 8)])  # 8 clips of 8 patches
    m = np.ones(x.shape[:2], np.float32)
    outputs = np.asarray(keras.ops.convert_to_numpy(head((x, m), training=False)), np.float32)
    y = (np.random.default_rng(1).random((8, 10)) < 0.3).astype(np.float32)
    head.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    losses = [float(head.train_on_batch((x, m), y)) for _ in range(5)]
    np.savez(out, embeddings=embeddings, outputs=outputs, losses=np.array(losses))
    part.add("parity_dump", str(out))


def worker(args):
    backend = os.environ["KERAS_BACKEND"]
    size = SIZES["quick" if args.quick else "full"]
    work = pathlib.Path(args.work)
    part = Report(args.json, {"device": device_info(backend)})
    rng = np.random.default_rng(0)
    patches = (rng.standard_normal((max(size["batches"]) + 64, 96, 64)) * 2).astype(np.float32)
    clips = sorted(str(p) for p in (work / "clips").glob("*.wav"))
    parity_dump(part, work / "vggish.npz", patches, work, pathlib.Path(args.json).with_suffix(".npz"))
    measure_network(part, work / "vggish.npz", patches, size)
    measure_end_to_end(part, backend, work / "vggish.npz", clips, work, size)
    measure_training(part, size)


# ---------------------------------------------------------------- the whole check


def prepare(work, size):
    import soundfile as sf

    from tagger.testing import random_weights

    np.savez(work / "vggish.npz", **random_weights(0))  # the plain weights file: no TensorFlow to write or read it
    (work / "clips").mkdir(exist_ok=True)
    # WAV at 22,050 Hz (resampled on the way in), and where soundfile can write it, the same as MP3 at 16 kHz mono,
    # as MagnaTagATune's clips are (the projection's decode cost)
    formats = [("wav", 22050)] + ([("mp3", 16000)] if "MP3" in sf.available_formats() else [])
    for i in range(size["clips"]):
        for fmt, rate in formats:
            rng = np.random.default_rng(i)
            n = int(size["seconds"] * rate)
            tone = np.sin(2 * np.pi * (110 + 7 * i) * np.arange(n) / rate)
            sf.write(
                str(work / "clips" / f"clip{i:04d}.{fmt}"),
                (0.3 * tone + 0.05 * rng.standard_normal(n)).astype(np.float32),
                rate,
            )


def parity(report, dumps):
    if len(dumps) < 2:
        report.add("parity", f"needs two backends; measured: {sorted(dumps) or 'none'}")
        return
    (a, pa), (b, pb) = sorted(dumps.items())[:2]
    da, db = np.load(pa), np.load(pb)
    rel = lambda k: float(np.abs(da[k] - db[k]).max() / max(np.abs(da[k]).max(), 1e-12))  # noqa: E731
    report.add(
        "parity",
        {
            "between": [a, b],
            "embeddings_rel": rel("embeddings"),
            "head_outputs_rel": rel("outputs"),
            "training_losses_rel": rel("losses"),
        },
    )


def projection(report):
    """All of MagnaTagATune at each backend's measured stage rates, per frontend (a measurement-based projection).

    Per frontend, the slowest of its stages, with decoding measured on MP3 clips at 16 kHz (MagnaTagATune's own
    format) where the machine could write them, scaled to MagnaTagATune's clip length (every stage's cost grows
    with the audio), plus the run's fixed overhead once: a small run's end-to-end rate would count its start-up
    25,863 / n times.
    """
    rows = {}
    for backend, part in report.data.get("backends", {}).items():
        e2e = part.get("end_to_end")
        if not e2e:
            continue
        decode = e2e.get("decode_clips_per_s", {})
        dev = e2e.get("device_frontend", {})
        routes = {
            "reference": (e2e["stage_clips_per_s"], "decode + frontend", "log_mel", e2e["overhead_s"]),
            "device": (dev.get("stage_clips_per_s"), "decode", "audio", dev.get("overhead_s")),
        }
        for frontend, (stages, decode_stage, output, overhead) in routes.items():
            if not stages:
                continue
            stages = dict(stages)
            fmt = "mp3" if f"mp3 {output}" in decode else "wav"
            stages[decode_stage] = decode.get(f"{fmt} {output}", stages[decode_stage])
            limit = min(stages, key=stages.get)
            clip_rate = stages[limit] * e2e["clip_seconds"] / MTT_SECONDS
            seconds = MTT_CLIPS / clip_rate + max(0.0, overhead)
            rows.setdefault(backend, {})[frontend] = {
                "mtt_clips_per_s": round(clip_rate, 2),
                "seconds": round(seconds, 1),
                "hours": round(seconds / 3600, 2),
                "limit": limit,
                "basis": f"measured on this machine: the slowest stage ({limit}, {stages[limit]:.2f} clips/s of"
                f" {e2e['clip_seconds']} s; decoding {fmt.upper()}) plus {overhead} s start-up; assumes the stages"
                " overlap (decode on the CPU cores, the network on the device), optimistic where both share a CPU",
            }
    report.add("mtt_projection", rows)


def table(report):
    lines = [f"GPU check ({report.data['size']}) on {report.data['machine']}"]
    for backend, part in report.data.get("backends", {}).items():
        if "device" not in part:
            lines.append(f"  {backend}: {part.get('error')}")
            continue
        dev = part["device"]
        lines.append(
            f"  {backend}: devices {dev.get('devices')}, auto precision {dev.get('auto_precision')},"
            f" {part.get('wall_s')} s" + (f"; stopped: {part['error']}" if "error" in part else "")
        )
        for row in part.get("network", []):
            lines.append(
                f"    network {row['dtype']:>8} batch {row['batch']:>4}: {row['patches_per_s']:>10.1f} patches/s"
                f" (first call {row['first_call_s']} s)"
            )
        if "end_to_end" in part:
            e = part["end_to_end"]
            lines.append(
                f"    tagger embed end to end: {e['clips_per_s']} clips/s ({e['clips']} x {e['clip_seconds']} s,"
                f" {e['workers']} workers, {e['dtype']} batch {e['batch']}); limit: {e['limit']} {e['stage_clips_per_s']},"
                f" overhead {e['overhead_s']} s (worker start-up, compiling, writes)"
            )
            if "device_frontend" in e:
                d = e["device_frontend"]
                lines.append(
                    f"    tagger embed --frontend device: {d['clips_per_s']} clips/s; limit: {d.get('limit')}"
                    f" {d.get('stage_clips_per_s')}, overhead {d.get('overhead_s')} s; float32 embeddings within"
                    f" {d['float32_difference']:.2e} of the reference frontend's"
                )
            if e.get("decode_clips_per_s"):
                lines.append(f"    decoding alone, clips/s ({e['workers']} workers): {e['decode_clips_per_s']}")
        if "training" in part:
            t = part["training"]
            lines.append(
                f"    head training: {t['steps_per_s']} steps/s ({t['head']}, batch {t['batch']} x window {t['window']})"
            )
    lines.append(f"  parity: {report.data.get('parity')}")
    for backend, routes in report.data.get("mtt_projection", {}).items():
        for frontend, row in routes.items():
            lines.append(
                f"  MagnaTagATune ({MTT_CLIPS} clips) on {backend}, {frontend} frontend: {row['seconds']} s"
                f" ({row['hours']} h) at {row['mtt_clips_per_s']} clips/s ({row['basis']})"
            )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the rehearsal size (a CPU in about 5 minutes)")
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu_check"), help="folder of gpu_check.json")
    ap.add_argument("--backends", default="jax,torch", help="comma-separated Keras backends (default jax,torch)")
    ap.add_argument("--timeout", type=float, default=240, help="seconds each backend may take")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    from tagger.testing import WITHOUT_TENSORFLOW  # each backend's process runs without TensorFlow

    size_name = "quick" if args.quick else "full"
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
        platform.processor(),
    )
    report = Report(
        out / "gpu_check.json",
        {
            "size": size_name,
            "machine": f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "backends": {},
        },
    )
    with tempfile.TemporaryDirectory(prefix="tagger-gpu-check-") as tmp:
        work = pathlib.Path(tmp)
        prepare(work, SIZES[size_name])
        dumps = {}
        for backend in args.backends.split(","):
            if importlib.util.find_spec(backend) is None:  # (PYTHONPATH counts: this process sees it too)
                report.data["backends"][backend] = {"error": f"not installed here ({backend} cannot be imported)"}
                report.write()
                continue
            part_json = out / f"part-{backend}.json"
            command = [
                sys.executable,
                "-c",
                WITHOUT_TENSORFLOW + "import runpy, sys; sys.argv = sys.argv[1:];"
                " runpy.run_path(sys.argv[0], run_name='__main__')",
                __file__,
                "--worker",
                "--work",
                str(work),
                "--json",
                str(part_json),
            ] + (["--quick"] if args.quick else [])
            path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
            env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": path}
            started = time.perf_counter()
            try:
                done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
                problem = None if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-600:]}"
            except subprocess.TimeoutExpired:
                problem = f"cut short after {args.timeout:.0f} s (what it measured is kept)"
            part = json.loads(part_json.read_text()) if part_json.exists() else {}
            if problem:
                part["error"] = problem
            part["wall_s"] = round(time.perf_counter() - started, 1)
            report.data["backends"][backend] = part
            report.write()
            if part_json.with_suffix(".npz").exists():
                dumps[backend] = part_json.with_suffix(".npz")
        parity(report, dumps)
        projection(report)
    print(table(report))
    print(f"(written to {out / 'gpu_check.json'})")


if __name__ == "__main__":
    sys.exit(main())
