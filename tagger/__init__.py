"""tagger: music tagging by transfer learning from Google's VGGish.

Light to import: TensorFlow loads only when a network is built.
"""

from .exceptions import AudioError, DataError, ParameterError, TaggerError, TaggerWarning
from .version import __version__

__all__ = [
    "__version__",
    "TaggerError",
    "ParameterError",
    "AudioError",
    "DataError",
    "TaggerWarning",
    "Embedder",
    "embed",
    "embed_files",
    "Tagger",
]


def __getattr__(name):
    if name in ("Embedder", "embed", "embed_files"):
        from .embedding import embed as _embed

        return getattr(_embed, name)
    if name == "Tagger":
        from .tagging.api import Tagger

        return Tagger
    raise AttributeError(f"module 'tagger' has no attribute {name!r}")
