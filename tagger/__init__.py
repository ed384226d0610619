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
    if name in ("Embedder", "embed"):  # the default model's array API (VGGish's)
        from .embedding.vggish import extractor as _vggish

        return getattr(_vggish, name)
    if name == "embed_files":
        from .embedding.embed import embed_files

        return embed_files
    if name == "Tagger":
        from .tagging.api import Tagger

        return Tagger
    raise AttributeError(f"module 'tagger' has no attribute {name!r}")
