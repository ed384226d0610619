"""Build VGGish weight files in the official layout, with random values.

The real weights cannot be downloaded everywhere (CI, offline machines);
these writers produce a TF-slim checkpoint and a SavedModel with exactly the
official variable names, so every loading code path can run on them.
Also useful to try the pipeline end to end before fetching real weights.
"""

import hashlib
import os
import shutil

import numpy as np

from .embedding.vggish import params
from .embedding.vggish.network import official_names

__all__ = [
    "random_weights",
    "write_checkpoint",
    "write_savedmodel",
    "numpy_forward",
    "populate_hub_cache",
    "write_pca_params",
    "write_fixtures",
    "main",
    "WITHOUT_TENSORFLOW",
]

#: Python code to run first in a fresh interpreter (``python -c WITHOUT_TENSORFLOW + rest``): TensorFlow cannot be
#: imported there, as on a machine that has none. The finder answers with a spec without an origin (PyTorch's
#: tracing rules probe ``find_spec`` and skip such modules) whose import then fails.
WITHOUT_TENSORFLOW = """
import importlib.abc, importlib.machinery, sys
class _NoTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith(("tensorflow.", "tf_keras", "tensorflow_hub")):
            return importlib.machinery.ModuleSpec(name, self)
        return None
    def create_module(self, spec):
        raise ImportError(spec.name + " is blocked: this process runs without TensorFlow")
    def exec_module(self, module):
        raise ImportError(module.__name__ + " is blocked")
sys.meta_path.insert(0, _NoTensorFlow())
"""


def random_weights(seed=0):
    """Random VGGish weights (He-scaled so activations stay in range).

    Returns
    -------
    dict of str -> np.ndarray, float32
        Official variable name -> value.
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in official_names().items():
        if name.endswith("/weights"):
            fan_in = int(np.prod(shape[:-1]))
            weights[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        else:
            weights[name] = (rng.standard_normal(shape) * 0.01).astype(np.float32)
    return weights


def write_checkpoint(weights, path, *, version=1):
    """Write a TF-slim style checkpoint, like the official ``vggish_model.ckpt``.

    Parameters
    ----------
    weights : dict of str -> np.ndarray
    path : str
        Checkpoint path (for V1 a single file; for V2 a prefix).
    version : {1, 2}
        Checkpoint format; the official release is V1.

    Returns
    -------
    str
        The path to pass to :func:`tagger.embedding.vggish.network.read_weights`.
    """
    import tensorflow as tf

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fmt = {1: tf.compat.v1.train.SaverDef.V1, 2: tf.compat.v1.train.SaverDef.V2}[version]
    graph = tf.Graph()
    with graph.as_default():
        # initial values fed through placeholders: as constants, 290 MB of weights would be copied into the graph
        feeds = {name: tf.compat.v1.placeholder(tf.float32, np.shape(value)) for name, value in weights.items()}
        variables = [tf.compat.v1.Variable(feeds[name], name=name) for name in weights]
        saver = tf.compat.v1.train.Saver(variables, write_version=fmt)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer(), {feeds[k]: v for k, v in weights.items()})
            return saver.save(sess, os.fspath(path), write_meta_graph=False, write_state=False)


def write_savedmodel(weights, path):
    """Write a SavedModel tracking the weights under their official names.

    Its ``__call__`` takes a 1-D float32 waveform like the TF Hub model's; it
    returns zeros, since only the variables are read by tagger.
    """
    import tensorflow as tf

    class _VGGishFixture(tf.Module):
        def __init__(self):
            super().__init__(name=None)
            self.vggish_variables = [tf.Variable(v, name=k) for k, v in weights.items()]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, waveform):
            return tf.zeros([1, 128])

    tf.saved_model.save(_VGGishFixture(), os.fspath(path))
    return os.fspath(path)


def numpy_forward(weights, patches):
    """Independent NumPy forward pass of VGGish, the reference for the Keras model.

    Parameters
    ----------
    weights : dict of str -> np.ndarray
    patches : np.ndarray, shape (N, 96, 64)

    Returns
    -------
    np.ndarray, shape (N, 128), float64
    """
    x = np.asarray(patches, dtype=np.float64)[..., None]

    def conv_relu(x, scope):
        kernel, bias = weights[scope + "/weights"].astype(np.float64), weights[scope + "/biases"]
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        h, w = x.shape[1:3]
        out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
        for i in range(3):
            for j in range(3):
                out += padded[:, i : i + h, j : j + w, :] @ kernel[i, j]
        return np.maximum(out + bias, 0.0)

    def pool(x):
        n, h, w, c = x.shape
        x = np.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-np.inf)
        return x.reshape(n, (h + 1) // 2, 2, (w + 1) // 2, 2, c).max(axis=(2, 4))

    x = pool(conv_relu(x, "vggish/conv1"))
    x = pool(conv_relu(x, "vggish/conv2"))
    x = pool(conv_relu(conv_relu(x, "vggish/conv3/conv3_1"), "vggish/conv3/conv3_2"))
    x = pool(conv_relu(conv_relu(x, "vggish/conv4/conv4_1"), "vggish/conv4/conv4_2"))
    x = x.reshape(len(x), -1)
    for scope in ("vggish/fc1/fc1_1", "vggish/fc1/fc1_2"):
        x = np.maximum(x @ weights[scope + "/weights"] + weights[scope + "/biases"], 0.0)
    return x @ weights["vggish/fc2/weights"] + weights["vggish/fc2/biases"]


def populate_hub_cache(cache_dir, repo_id, folder, *, revision="main", commit="0" * 40):
    """Put ``folder``'s files into a Hugging Face cache as ``snapshot_download`` leaves them; the snapshot folder.

    The official layout of ``huggingface_hub``'s cache (``$HF_HUB_CACHE``):
    ``models--OWNER--REPO/blobs/<hash>`` holds each file once,
    ``snapshots/<commit>/<file>`` links to its blob, ``refs/<revision>`` names
    the commit. What a machine that fetched the repository once holds, for
    tests that cannot reach the Hub.
    """
    repo = os.path.join(os.fspath(cache_dir), "models--" + repo_id.replace("/", "--"))
    snapshot = os.path.join(repo, "snapshots", commit)
    os.makedirs(os.path.join(repo, "blobs"), exist_ok=True)
    os.makedirs(snapshot, exist_ok=True)
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    for name in sorted(os.listdir(folder)):
        source = os.path.join(folder, name)
        if not os.path.isfile(source):
            continue
        with open(source, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        shutil.copy(source, os.path.join(repo, "blobs", digest))
        os.symlink(os.path.join("..", "..", "blobs", digest), os.path.join(snapshot, name))
    with open(os.path.join(repo, "refs", revision), "w") as f:
        f.write(commit)
    return snapshot


def write_pca_params(path, *, seed=0):
    """A ``vggish_pca_params.npz`` in the official layout with random values (a random rotation, means 0.5)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((params.EMBEDDING_SIZE, params.EMBEDDING_SIZE)))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(
        path,
        **{params.PCA_MEANS_NAME: np.full((params.EMBEDDING_SIZE, 1), 0.5), params.PCA_EIGEN_VECTORS_NAME: q},
    )
    return path


def write_fixtures(folder, *, seed=0):
    """Fixture weights (``vggish_model.ckpt``) and PCA parameters (``vggish_pca_params.npz``) in ``folder``.

    Every command runs on them; the tags they give mean nothing (random weights).

    Returns
    -------
    tuple of str
        The checkpoint's and the PCA file's paths.
    """
    ckpt = os.path.join(folder, "vggish_model.ckpt")
    write_checkpoint(random_weights(seed), ckpt)
    return ckpt, write_pca_params(os.path.join(folder, "vggish_pca_params.npz"), seed=seed)


def main(argv=None):
    """``python -m tagger.testing DIR``: write the fixtures into DIR and say how to use them."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m tagger.testing",
        description="Write random VGGish weights and PCA parameters in the official layout, to try every command"
        " without the real ones (the tags mean nothing).",
    )
    parser.add_argument("folder", nargs="?", default="fixture")
    args = parser.parse_args(argv)
    ckpt, pca = write_fixtures(args.folder)
    print(f"export {params.WEIGHTS_ENV}={os.path.abspath(ckpt)} {params.PCA_PARAMS_ENV}={os.path.abspath(pca)}")
    print("random weights: every command runs, the tags mean nothing; the shipped heads need --allow-other-embedding")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
