"""Step 4, tagging: clips -> tags with a trained head.

``api`` (:class:`Tagger`, :class:`Head`), ``results`` (:class:`TagResult`) and
``writer`` (rows and records of tags; ``tagger tag`` into a resumable CSV or JSONL file).
"""

from .api import Head, Tagger
from .results import TagResult
from .writer import FORMATS, output_settings, row_fields, tag_to_file

__all__ = ["Head", "Tagger", "TagResult", "tag_to_file", "FORMATS", "output_settings", "row_fields"]
