"""The exception tree and the warning class of tagger.

Every error raised on purpose by the library is a :class:`TaggerError`, so
callers can catch one type; the subclasses say which kind of input was bad.
"""

__all__ = ["TaggerError", "ParameterError", "AudioError", "DataError", "TaggerWarning"]


class TaggerError(Exception):
    """Base class of every error tagger raises on purpose."""


class ParameterError(TaggerError, ValueError):
    """A setting, argument or configuration value is invalid."""


class AudioError(TaggerError):
    """An audio file or array cannot be decoded or used (names the file)."""


class DataError(TaggerError):
    """A dataset, cache entry, weights file or run folder is missing or inconsistent."""


class TaggerWarning(UserWarning):
    """A recoverable oddity: a padded short clip, a silent clip, a skipped file."""
