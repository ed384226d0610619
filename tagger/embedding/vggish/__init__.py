"""VGGish (Hershey et al. 2017; Google's released weights): 0.96 s log-mel patches -> 128-d embeddings.

The model's folder, as Google's ``vggish_params.py`` / ``mel_features.py`` /
``vggish_slim.py`` / ``vggish_postprocess.py`` sit together: ``params``
(every constant), ``frontend`` (log-mel patches, pure NumPy; the decode
workers' job), ``network`` (the Keras network and its weights),
``postprocess`` (PCA whitening and 8-bit quantisation), ``extractor``
(:class:`~tagger.embedding.vggish.extractor.Embedder`, the extractor of its
two kinds). :data:`SPEC` declares it to :mod:`tagger.embedding.registry`;
importing this package loads no network.
"""

from ..registry import Kind, Model
from . import params

__all__ = ["SPEC"]

_ROW = (params.EMBEDDING_SIZE,)

SPEC = Model(
    name="vggish",
    kinds=(
        Kind("raw", "vggish", _ROW, "float32", "raw VGGish embeddings (128-d, 0.96 s patches)"),
        Kind(
            "postprocessed",
            "vggish",
            _ROW,
            "uint8",
            "VGGish embeddings, PCA-whitened and 8-bit quantised with Google's released PCA parameters"
            " (tagger postprocesses raw output itself)",
            pca=True,
            served_by="raw",
            cast=False,
            to_float="tagger.embedding.vggish.postprocess:dequantize",
            postprocessor="tagger.embedding.vggish.postprocess:Postprocessor",
        ),
    ),
    sample_rate=params.SAMPLE_RATE,
    window_seconds=params.EXAMPLE_WINDOW_SECONDS,
    hop_seconds=params.EXAMPLE_HOP_SECONDS,
    frontend=params.frontend_params,
    weights=("TF1 checkpoint", "SavedModel", ".npz", ".safetensors"),
    licence="Apache-2.0 (Google's released VGGish weights)",
    make="tagger.embedding.vggish.extractor:make_extractor",
    plan="tagger.embedding.vggish.extractor:plan_extractor",
    options=("weights", "pca_params", "batch_size", "hop_seconds", "short_policy", "dtype", "frontend_kind"),
    input_shape=params.PATCH_SHAPE,
    weights_reader="tagger.embedding.vggish.network",
    decode="tagger.embedding.vggish.frontend:decode_messages",
    trunk="tagger.embedding.vggish.network:trunk",
)
