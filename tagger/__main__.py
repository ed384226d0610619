"""``python -m tagger`` is the ``tagger`` command."""

from .cli import console

raise SystemExit(console())
