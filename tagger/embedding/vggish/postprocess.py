"""VGGish postprocessing: PCA whitening and 8-bit quantisation with the official parameters.

Pure NumPy (no network): the cache dequantises and postprocesses raw
entries on read without loading TensorFlow.
"""

import hashlib
import os

import numpy as np

from ...exceptions import DataError, ParameterError
from . import params

__all__ = ["Postprocessor", "dequantize"]


def _pca_path(path):
    if path:
        return os.fspath(path)
    if os.environ.get(params.PCA_PARAMS_ENV):
        return os.environ[params.PCA_PARAMS_ENV]
    raise DataError(
        f"VGGish PCA parameters are needed for postprocessing: download {params.PCA_PARAMS_URL} and pass"
        f" it with --pca PATH or {params.PCA_PARAMS_ENV}=PATH"
    )


class Postprocessor:
    """PCA whitening and 8-bit quantisation with the official parameters.

    Parameters
    ----------
    pca_params : str or os.PathLike, optional
        ``vggish_pca_params.npz`` holding ``pca_means`` (128,) and
        ``pca_eigen_vectors`` (128, 128). Default: ``$TAGGER_VGGISH_PCA``.
    """

    def __init__(self, pca_params=None):
        path = _pca_path(pca_params)
        if not os.path.exists(path):
            raise DataError(
                f"{path}: VGGish PCA parameters not found; download {params.PCA_PARAMS_URL} and pass"
                f" it with --pca or {params.PCA_PARAMS_ENV}=PATH"
            )
        try:
            with np.load(path) as npz:
                self.means = npz[params.PCA_MEANS_NAME].reshape(-1, 1)
                self.eigen = npz[params.PCA_EIGEN_VECTORS_NAME]
        except (KeyError, ValueError, OSError) as exc:
            raise DataError(f"{path}: not a VGGish PCA parameter file ({exc})") from exc
        size = params.EMBEDDING_SIZE
        if self.eigen.shape != (size, size) or self.means.shape != (size, 1):
            raise DataError(f"{path}: PCA shapes {self.eigen.shape}, {self.means.shape} are not 128-d")
        self.path = path
        digest = hashlib.sha1(np.ascontiguousarray(self.means, np.float64).tobytes())
        digest.update(np.ascontiguousarray(self.eigen, np.float64).tobytes())
        self.id = "pca-sha1:" + digest.hexdigest()[:16]  # what cache entries record

    def whiten(self, emb):
        """PCA-whitened embeddings, shape (T, 128), float64, before clipping."""
        emb = np.asarray(emb, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[1] != params.EMBEDDING_SIZE:
            raise ParameterError(f"embeddings must have shape (T, 128), got {emb.shape}")
        return (self.eigen @ (emb.T - self.means)).T

    def __call__(self, emb):
        """Whiten, clip to [-2, 2] and quantise to 0..255.

        Parameters
        ----------
        emb : np.ndarray, shape (T, 128)
            Raw embeddings.

        Returns
        -------
        np.ndarray, shape (T, 128), uint8
        """
        lo, hi = params.QUANTIZE_MIN_VAL, params.QUANTIZE_MAX_VAL
        clipped = np.clip(self.whiten(emb), lo, hi)
        return ((clipped - lo) * (255.0 / (hi - lo))).astype(np.uint8)

    def invert(self, quantized):
        """Approximate raw embeddings from quantised ones (inverse PCA of the dequantised values).

        Exact up to quantisation for values whose whitened form lies inside [-2, 2].
        """
        whitened = dequantize(quantized).astype(np.float64).T
        return (np.linalg.solve(self.eigen, whitened) + self.means).T.astype(np.float32)


def dequantize(quantized):
    """Map uint8 postprocessed embeddings back to whitened floats in [-2, 2].

    Parameters
    ----------
    quantized : np.ndarray, shape (..., 128), uint8

    Returns
    -------
    np.ndarray, same shape, float32: ``x / 255 * 4 - 2``
    """
    lo, hi = params.QUANTIZE_MIN_VAL, params.QUANTIZE_MAX_VAL
    return (np.asarray(quantized, dtype=np.float32) * ((hi - lo) / 255.0) + lo).astype(np.float32)
