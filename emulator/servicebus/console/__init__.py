"""A web console for the emulator: entities, counts, messages, dead letters, scheduled
messages, the clock and fault rules, served at ``/console`` on the admin port.

``views`` reads the broker into plain data, ``actions`` changes it (resubmit, purge, cancel),
``web`` renders both as HTML for htmx, and ``panels`` lets an embedding process (the harness)
add tables of its own. See docs/console.md.
"""

from .panels import Panel, PanelTable
from .web import Console

__all__ = ["Console", "Panel", "PanelTable"]
