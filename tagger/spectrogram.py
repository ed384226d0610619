"""The spectrogram input: cached log-mel patches instead of embeddings (``frontend: melspec``).

:class:`PatchExtractor` stands where :class:`tagger.embed.Embedder` stands
(``tagger prepare ... --frontend melspec``, ``tagger tag`` with a head
trained on patches): the same decode workers and the same VGGish frontend
(:mod:`tagger.frontend`, 96 x 64 log-mel patches of 0.96 s), but no network.
Cache entries are of kind ``'melspec'`` and hold the patches as float16:
31 patches x 96 x 64 x 2 bytes = 381 KB per 30 s clip (a float32 embedding
entry is 16 KB). Heads that take patches: the CNNs of :mod:`tagger.heads`.
"""

import numpy as np

from . import params
from .frontend import waveform_to_patches

__all__ = ["PatchExtractor", "PATCH_DTYPE"]

PATCH_DTYPE = np.float16  # log-mel values lie in about [-5, 8]: float16 keeps 3 decimal digits


class PatchExtractor:
    """Log-mel patches of clips, behind the interface of :class:`tagger.embed.Embedder`.

    Parameters
    ----------
    hop_seconds : float
        Patch hop (0.96 s: no overlap).
    short_policy : {'pad', 'skip'}
        Clips shorter than 0.96 s.
    """

    kind = "melspec"
    pca_id = None
    postprocessor = None
    dtype = "float16"

    def __init__(self, *, hop_seconds=params.EXAMPLE_HOP_SECONDS, short_policy="pad"):
        self.hop_seconds = hop_seconds
        self.short_policy = short_policy
        self.frontend = params.frontend_params(hop_seconds=hop_seconds)
        self.network_id = "melspec-float16"
        self.weights_id = self.network_id
        self.batch_size = 256

    def run(self, patches):
        """Patches as they are cached: (n, 96, 64) float16."""
        return np.asarray(patches).astype(PATCH_DTYPE)

    def finalize(self, patches):
        return patches

    def embed(self, y, sr):
        """Patches of a waveform: ``((T, 96, 64) float16, timestamps (T,))``."""
        patches, times = waveform_to_patches(y, sr, hop_seconds=self.hop_seconds, short_policy=self.short_policy)
        return self.run(patches), times

    def iter_files(self, paths, *, workers=None, raw=False):
        """Patches of files, decoded in parallel (:func:`tagger.pipeline.iter_embeddings` without a network)."""
        from .pipeline import iter_embeddings

        return iter_embeddings(
            paths,
            self.run,
            batch_size=self.batch_size,
            hop_seconds=self.hop_seconds,
            short_policy=self.short_policy,
            workers=workers,
        )
