"""The plain weights file every model's weights can be exported to (``tagger weights export``): an ``.npz`` or
``.safetensors`` file of named arrays, read on every Keras backend without TensorFlow."""

import numpy as np

from ..exceptions import DataError

__all__ = ["PLAIN_FORMATS", "read_plain"]

#: the endings of the plain file's two forms
PLAIN_FORMATS = (".npz", ".safetensors")


def read_plain(path):
    """An ``.npz`` or ``.safetensors`` file -> ``{name: array}`` (no pickles: ``allow_pickle=False``).

    Raises
    ------
    DataError
        The file cannot be read as either form (named, with the reader's words).
    """
    try:
        if path.endswith(".safetensors"):
            from safetensors.numpy import load_file

            return load_file(path)
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception as exc:  # noqa: BLE001 - zip, header and safetensors errors come in many types
        raise DataError(f"{path}: cannot read a plain weights file ({type(exc).__name__}: {exc})") from exc
