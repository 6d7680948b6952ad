"""``python -m sppdet``: the same command line as the ``sppdet`` script."""
import sys

from .cli import main

sys.exit(main())
