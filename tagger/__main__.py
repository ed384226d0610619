"""``python -m tagger`` is the ``tagger`` command."""

from .cli import main

raise SystemExit(main())
