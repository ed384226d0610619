"""The version of tagger: read by ``setup.py`` (as text, without importing the package) and by ``tagger --version``."""

__version__ = "0.2.0"
