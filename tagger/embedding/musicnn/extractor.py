"""musicnn's extractor: one of its four networks loaded once, one representation out (arrays first).

>>> ex = MusicnnExtractor("musicnn-mtt", "max_pool")   # weights from the installed musicnn package
>>> values, times = ex.embed(y, sr)                      # (T, 753) float32, (T,) seconds (2.992 s apart)
"""

import os

import numpy as np

from ... import backend
from ...exceptions import ParameterError
from .. import params as precision
from ..embed import resolve_dtype
from ..pipeline import default_workers, iter_embeddings, refuse_in_bootstrapping_child
from . import params
from .frontend import decode_messages, waveform_to_patches
from .network import network, read_weights, resolve_source, weights_id

__all__ = ["MusicnnExtractor", "make_extractor", "LAYERS"]

#: the representations each architecture gives, and one row's size
LAYERS = {
    "musicnn": {"max_pool": params.MIDEND_SIZE, "mean_pool": params.MIDEND_SIZE, "penultimate": 200},
    "vgg": {"pool5": params.POOL5_SIZE},
}


class MusicnnExtractor:
    """One musicnn network, run on fixed-size batches of 187 x 96 patches, giving one of its representations.

    Parameters
    ----------
    name : {'musicnn-mtt', 'musicnn-msd', 'vgg-mtt', 'vgg-msd'}
    layer : str
        ``max_pool``, ``mean_pool``, ``penultimate`` (musicnn) or ``pool5`` (vgg); ``taggram`` gives the network's
        own 50 sigmoids per patch (not a cached kind).
    weights : str, optional
        A checkpoint folder or a plain weights file (default: the network's folder in ``$TAGGER_MUSICNN_WEIGHTS``,
        else in the installed ``musicnn`` package).
    batch_size : int, optional
        Patches per network call (default 32 on a CPU, 256 on a GPU); partial batches are zero-padded.
    short_policy : {'pad', 'skip'}
        Clips shorter than one patch (2.99 s): frames repeated to fill it, as musicnn trained, or no patch.
    dtype : {'float32', 'bfloat16', 'float16', 'auto'}, optional
        float32 unless asked (``dtype`` or ``$TAGGER_PRECISION``): the network is small (0.8 M parameters, the
        frontend dominates) and its top tags can be 0.08 % apart. No precision guard: a lower precision is
        the caller's choice, recorded in the network's id.
    """

    pca_id = None
    postprocessor = None
    hop_seconds = params.PATCH_SECONDS  # fixed: musicnn's patches do not overlap (what a Beam job's settings record)
    guard_tolerance = None  # no precision guard (float32 unless asked)

    def __init__(self, name, layer, *, weights=None, batch_size=None, short_policy="pad", dtype=None):
        refuse_in_bootstrapping_child()
        _, architecture, _ = params.network(name)
        if layer != "taggram" and layer not in LAYERS[architecture]:
            raise ParameterError(f"layer={layer!r}: {name} gives {', '.join(LAYERS[architecture])} (or taggram)")
        if short_policy not in params.SHORT_POLICIES:
            raise ParameterError(f"short_policy={short_policy!r} must be one of {params.SHORT_POLICIES}")
        self.on_gpu = bool(backend.gpus())
        batch_size = (256 if self.on_gpu else 32) if batch_size is None else batch_size
        if batch_size < 1:
            raise ParameterError(f"batch_size={batch_size} must be >= 1")
        if dtype is None and not os.environ.get(precision.PRECISION_ENV):
            dtype = "float32"
        self.dtype = resolve_dtype(dtype)
        self.name, self.layer = name, layer
        self.kind = f"{name}:{layer}"
        self.frontend = params.frontend_params()
        self.short_policy = short_policy
        self.batch_size = int(batch_size)
        self.weights_source = resolve_source(weights, name)  # what a Beam worker loads
        values = read_weights(self.weights_source, name)
        self.weights_id = weights_id(values, name)
        self.network_id = self.weights_id + ("" if self.dtype == "float32" else "+" + self.dtype)
        self.size = params.NUM_CLASSES if layer == "taggram" else LAYERS[architecture][layer]
        import keras

        net = network(values, name, dtype=self.dtype)
        self._net = keras.Model(net.inputs, net.output[layer], name=f"{name}_{layer}".replace("-", "_"))
        self._forward = backend.inference(self._net, [(self.batch_size, *params.PATCH_SHAPE)])

    @property
    def model(self):
        """The Keras network that runs, up to :attr:`layer`."""
        return self._net

    def run(self, patches):
        """The representation of patches.

        Parameters
        ----------
        patches : np.ndarray, shape (n, 187, 96), float32

        Returns
        -------
        np.ndarray, shape (n, size), float32
        """
        patches = np.asarray(patches, dtype=np.float32)
        outs = []
        for start in range(0, len(patches), self.batch_size):
            chunk = patches[start : start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                chunk = np.concatenate([chunk, np.zeros((self.batch_size - n, *chunk.shape[1:]), np.float32)])
            outs.append(self._forward(chunk)[:n])
        return np.concatenate(outs) if outs else np.zeros((0, self.size), np.float32)

    def finalize(self, values):
        return values

    def embed(self, y, sr):
        """A waveform's representation.

        Parameters
        ----------
        y : np.ndarray, shape (n,) or (n, channels)
        sr : int
            Hz (resampled to 16 kHz).

        Returns
        -------
        values : np.ndarray, shape (T, size), float32
        timestamps : np.ndarray, shape (T,), float64
            Patch start times in seconds.
        """
        patches, times = waveform_to_patches(y, sr, short_policy=self.short_policy)
        return self.run(patches), times

    def settle(self, paths):
        """Nothing depends on the run's audio (:meth:`tagger.embedding.extractor.Extractor.settle`)."""

    def iter_files(self, paths, *, workers=None, raw=False):
        """Files decoded in parallel -> :class:`tagger.embedding.pipeline.TrackResult` in input order."""
        return iter_embeddings(
            paths,
            self.run,
            target=decode_messages,
            target_options=dict(short_policy=self.short_policy),
            row_shape=(self.size,),
            batch_size=self.batch_size,
            workers=default_workers(gpu=self.on_gpu) if workers is None else workers,
        )


def make_extractor(kind, *, weights=None, batch_size=None, short_policy="pad", dtype=None, **ignored):
    """The registry's ``make`` for the four networks: ``kind`` is ``'<network>:<layer>'``."""
    name, _, layer = kind.partition(":")
    return MusicnnExtractor(name, layer, weights=weights, batch_size=batch_size, short_policy=short_policy, dtype=dtype)
