"""``python -m harness``: same as the ``harness`` command."""

import sys

from .cli import main

sys.exit(main())
