"""What differs between Keras 3's backends (TensorFlow, JAX, PyTorch), in one place.

Keras 3 runs one model definition on every backend; the backend is chosen
once per process, when Keras is first imported, by ``KERAS_BACKEND``
(``tensorflow``, the default, ``jax`` or ``torch``). What tagger needs beyond
the model itself lives here:

=======================  =================================  ============================  =========================
need                     tensorflow                         jax                           torch
=======================  =================================  ============================  =========================
GPUs                     ``tf.config``                      ``jax.devices('gpu')``        ``torch.cuda``
compiled inference       ``tf.function`` (one trace)        ``jax.jit`` (per shape)       eager, no autograd
data-parallel training   ``MirroredStrategy``               ``keras.distribution``        not offered (one device)
deterministic ops        ``enable_op_determinism``          deterministic on CPU          deterministic algorithms
=======================  =================================  ============================  =========================

Nothing is imported at import time: this module is read by every step, and
it must not load TensorFlow in a process that runs on JAX or PyTorch.
"""

import contextlib
import glob
import importlib.util
import json
import os
import sys

import numpy as np

from .exceptions import ParameterError

__all__ = [
    "check_choice",
    "BACKENDS",
    "name",
    "planned_name",
    "gpu_possible",
    "planned_auto_dtype",
    "gpus",
    "gpu_capability",
    "auto_dtype",
    "cpu_flags",
    "cpu_dtype",
    "CPU_BFLOAT16_FLAGS",
    "inference",
    "deterministic",
    "data_parallel",
]

BACKENDS = ("tensorflow", "jax", "torch")


#: what to install for each backend
_INSTALL = {
    "tensorflow": 'pip install "tensorflow"',
    "jax": 'pip install "vggish-tagger[jax]" (jax[cuda13] on a GPU)',
    "torch": "pip install torch (the build for your machine: https://pytorch.org/get-started/locally/)",
}


def check_choice():
    """Refuse a ``KERAS_BACKEND`` tagger does not run on, or whose package is not installed, without importing
    Keras or the backend (:class:`ParameterError`)."""
    wanted = os.environ.get("KERAS_BACKEND")
    if wanted is not None and wanted not in BACKENDS:
        raise ParameterError(f"KERAS_BACKEND={wanted!r}: tagger runs on one of {', '.join(BACKENDS)}")
    chosen = wanted or "tensorflow"
    if importlib.util.find_spec(chosen) is None:
        others = [b for b in BACKENDS if b != chosen and importlib.util.find_spec(b) is not None]
        instead = f", or choose an installed one: KERAS_BACKEND={' / '.join(others)}" if others else ""
        raise ParameterError(f"KERAS_BACKEND={chosen}: {chosen} is not installed here; {_INSTALL[chosen]}{instead}")


def name():
    """The Keras backend of this process (imports Keras, which fixes the backend for the process).

    Returns
    -------
    str
        One of :data:`BACKENDS`.

    Raises
    ------
    ParameterError
        ``KERAS_BACKEND`` names a backend tagger does not run on.
    """
    check_choice()
    import keras

    return keras.backend.backend()


def planned_name():
    """The Keras backend this process will run, known without importing Keras (:func:`name` once it is imported).

    Keras's own rule: ``KERAS_BACKEND``, else the ``backend`` of ``keras.json`` in ``$KERAS_HOME`` (default
    ``~/.keras``), else TensorFlow.

    Returns
    -------
    str or None
        None where ``keras.json`` cannot be read (the caller then asks :func:`name`).
    """
    if "keras" in sys.modules:
        return name()
    check_choice()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    folder = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    config = os.path.join(folder, "keras.json")
    if not os.path.exists(config):
        return "tensorflow"
    try:
        with open(config, encoding="utf-8") as f:
            chosen = json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return None
    return chosen if chosen in BACKENDS else None


#: device nodes one of which is there wherever a backend can see an accelerator (NVIDIA, AMD ROCm, TPU)
_ACCELERATOR_NODES = ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/accel*", "/dev/vfio/[0-9]*")


def _accelerator_nodes():
    return [node for pattern in _ACCELERATOR_NODES for node in glob.glob(pattern)]


def gpu_possible():
    """Whether a backend could see an accelerator here, judged from device nodes without importing one (Linux).

    False only where none of :data:`_ACCELERATOR_NODES` exists (an NVIDIA GPU's not counted where
    ``CUDA_VISIBLE_DEVICES`` hides every GPU); on another OS True: only :func:`gpus` can tell there.
    """
    if not sys.platform.startswith("linux"):
        return True
    nodes = _accelerator_nodes()
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        nodes = [node for node in nodes if not node.startswith("/dev/nvidia")]
    return bool(nodes)


def planned_auto_dtype():
    """What :func:`auto_dtype` will say, known without importing a backend; None where only the backend can tell
    (an accelerator may be there, or the backend is unknown)."""
    if "keras" in sys.modules:
        return auto_dtype()
    chosen = planned_name()
    if chosen is None or gpu_possible():
        return None
    return cpu_dtype(cpu_flags(), chosen)


def gpus():
    """The GPUs the backend sees (a list of device names; empty on a CPU-only machine)."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_physical_devices("GPU")]
    if backend == "jax":
        import jax

        try:
            return [str(d) for d in jax.devices("gpu")]
        except RuntimeError:  # no GPU platform in this jaxlib
            return []
    import torch

    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def gpu_capability():
    """The CUDA compute capability ``(major, minor)`` of the first GPU, or None (no GPU, or not an NVIDIA one)."""
    if not gpus():
        return None
    backend = name()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
            return tuple(details.get("compute_capability") or ()) or None
        if backend == "jax":
            import jax

            capability = getattr(jax.devices("gpu")[0], "compute_capability", None)
            return tuple(int(p) for p in str(capability).split(".")) if capability else None
        import torch

        return tuple(torch.cuda.get_device_capability(0))
    except (RuntimeError, ValueError, AttributeError, IndexError):
        return None


#: CPU flags (``/proc/cpuinfo``) that give TensorFlow's oneDNN kernels a fast bfloat16 path, and what
#: bfloat16 gained there (VGGish, network only, against float32 on the same machine, 2 cores):
#: ``amx_bf16`` (Intel Xeon, Sapphire Rapids and later) 4.7x; ``avx512_bf16`` without AMX (AMD EPYC Zen 4)
#: 1.7-1.8x. A CPU with neither ran bfloat16 4.5x *slower* than float32 (emulated), so it keeps float32.
CPU_BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo=None):
    """The CPU's feature flags, from the text of ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``).

    Parameters
    ----------
    cpuinfo : str, optional
        The file's text (default: read ``/proc/cpuinfo``; an empty set where there is none, e.g. macOS).

    Returns
    -------
    frozenset of str
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_dtype(flags, backend_name="tensorflow"):
    """The precision ``'auto'`` means on a CPU, by a fixed rule (never by timing, so that a machine's default,
    and with it the provenance of what it makes, is the same on every run).

    bfloat16 where the CPU has a bfloat16 path (:data:`CPU_BFLOAT16_FLAGS`: AMX, or AVX512_BF16) and the
    backend is TensorFlow, whose oneDNN kernels use it; float32 elsewhere, including JAX and PyTorch on a
    CPU (JAX's CPU bfloat16 ran slower than its float32 on an AVX512_BF16 EPYC: 65 against 71 patches/s).

    Parameters
    ----------
    flags : iterable of str
        :func:`cpu_flags`.
    backend_name : str

    Returns
    -------
    {'bfloat16', 'float32'}
    """
    fast = backend_name == "tensorflow" and any(flag in CPU_BFLOAT16_FLAGS for flag in flags)
    return "bfloat16" if fast else "float32"


def auto_dtype():
    """The precision ``'auto'`` means here: on a GPU, bfloat16 where it has bfloat16 tensor cores (compute
    capability 8.0 and up: A100, H100/H200, L4, RTX 30xx and later), else float16; on a CPU,
    :func:`cpu_dtype` of this CPU's flags (bfloat16 with AMX or AVX512_BF16 on TensorFlow, else float32)."""
    if not gpus():
        return cpu_dtype(cpu_flags(), name())
    capability = gpu_capability()
    return "bfloat16" if capability is not None and capability >= (8, 0) else "float16"


def _to_float32(out):
    import keras

    if isinstance(out, (list, tuple)):
        return type(out)(_to_float32(o) for o in out)
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")))


def inference(model, input_shapes):
    """A compiled ``model(inputs, training=False)``: NumPy in, float32 NumPy out.

    Parameters
    ----------
    model : keras.Model
    input_shapes : list of tuple
        One shape per model input, ``None`` for a size that varies between calls
        (TensorFlow traces once for them all; JAX compiles once per shape met,
        so callers keep the number of distinct shapes small).

    Returns
    -------
    callable
        ``f(*arrays) -> np.ndarray`` (float32).
    """
    backend = name()
    one = len(input_shapes) == 1
    if backend == "tensorflow":
        import tensorflow as tf

        spec = [tf.TensorSpec(list(shape), tf.float32) for shape in input_shapes]

        @tf.function(input_signature=spec)
        def forward(*xs):
            return tf.cast(model(xs[0] if one else tuple(xs), training=False), tf.float32)

        return lambda *xs: forward(*xs).numpy()
    if backend == "jax":
        import jax

        @jax.jit
        def forward(trainable, non_trainable, xs):
            out, _ = model.stateless_call(trainable, non_trainable, xs[0] if one else tuple(xs), training=False)
            return out.astype("float32")

        def run(*xs):
            state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
            return np.asarray(forward(*state, tuple(np.asarray(x, np.float32) for x in xs)))

        return run
    import torch

    def run(*xs):
        with torch.inference_mode():
            return _to_float32(model(xs[0] if one else tuple(xs), training=False))

    return run


def deterministic():
    """Ask the backend for deterministic kernels (a seeded run then repeats exactly; slower on a GPU)."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)
    # JAX: XLA's CPU kernels are deterministic; on a GPU, XLA_FLAGS=--xla_gpu_deterministic_ops=true


def data_parallel():
    """Training across every visible GPU: a context to build and compile the model in, and its replica count.

    TensorFlow: ``MirroredStrategy`` over two or more GPUs. JAX: Keras's
    ``DataParallel`` distribution over two or more devices. PyTorch, or one
    device: the model as it is.

    Returns
    -------
    scope : context manager
    replicas : int
        How many copies of the model share each global batch.
    """
    backend = name()
    devices = gpus()
    if backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy() if len(devices) > 1 else tf.distribute.get_strategy()
        return strategy.scope(), strategy.num_replicas_in_sync
    if backend == "jax" and len(devices) > 1:
        import keras

        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
        return contextlib.nullcontext(), len(devices)
    return contextlib.nullcontext(), 1
