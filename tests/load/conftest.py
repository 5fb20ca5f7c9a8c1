"""The load tests import Locust, which monkey-patches the standard library with gevent on
import unless told not to. These unit tests share their process (and xdist workers) with
the emulator and harness tests, whose threads, sockets and asyncio loops must stay real,
so patching is switched off before anything imports Locust. The repo root is put on the
path because `load/` is run from the checkout, not installed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["LOCUST_SKIP_MONKEY_PATCH"] = "1"

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
