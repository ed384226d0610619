"""musicnn (Pons & Serra 2019; MTG-UPF's released weights, ISC): 3 s log-mel patches -> its representations.

Four networks, each a model of :mod:`tagger.embedding.registry` (:data:`SPECS`): ``musicnn-mtt`` and
``musicnn-msd`` (musicnn: ``max_pool`` and ``mean_pool``, 753 per patch; ``penultimate``, 200),
``vgg-mtt`` and ``vgg-msd`` (``pool5``, 256), trained on MagnaTagATune and on the Million Song Dataset. Their
kinds are named ``'<network>:<layer>'``, as ``--embedding`` spells them. The folder keeps VGGish's layout:
``params`` (every constant and where it comes from), ``frontend`` (musicnn's exact log-mel patches; the
decode workers' job), ``network`` (the Keras networks and musicnn's checkpoints), ``extractor``.
Importing it loads no network and never imports the ``musicnn`` package.
"""

from ..registry import Kind, Model
from . import params

__all__ = ["SPECS"]

_SIZES = {
    "musicnn": (("max_pool", params.MIDEND_SIZE), ("mean_pool", params.MIDEND_SIZE), ("penultimate", 200)),
    "vgg": (("pool5", params.POOL5_SIZE),),
}
_WORDS = {
    "max_pool": "musicnn's max over time of its front- and mid-end features (753-d per 3 s patch)",
    "mean_pool": "musicnn's mean over time of its front- and mid-end features (753-d per 3 s patch)",
    "penultimate": "musicnn's penultimate layer (200-d per 3 s patch, batch-normalised dense)",
    "pool5": "musicnn's vgg, its last pooling layer flattened (256-d per 3 s patch)",
}


def _spec(name):
    folder, architecture, dataset = params.NETWORKS[name]
    kinds = tuple(
        Kind(f"{name}:{layer}", name, (size,), "float32", f"{_WORDS[layer]}, {folder} weights")
        for layer, size in _SIZES[architecture]
    )
    return Model(
        name=name,
        kinds=kinds,
        sample_rate=params.SAMPLE_RATE,
        window_seconds=params.PATCH_SECONDS,
        hop_seconds=params.PATCH_SECONDS,
        frontend=params.frontend_params,
        weights=("musicnn package", "TF1 checkpoint folder", ".npz", ".safetensors"),
        licence=params.LICENCE,
        make="tagger.embedding.musicnn.extractor:make_extractor",
        options=("weights", "batch_size", "short_policy", "dtype"),
        input_shape=params.PATCH_SHAPE,
        weights_reader="tagger.embedding.musicnn.network:WeightsReader",
        decode="tagger.embedding.musicnn.frontend:decode_messages",
    )


SPECS = tuple(_spec(name) for name in params.NETWORKS)
