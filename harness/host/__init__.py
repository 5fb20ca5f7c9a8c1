"""A local Azure Functions host for Python v2 apps that honours host.json.

`FunctionsHost.load(app_dir, settings=...)` imports and indexes an app folder; used as a
context manager it runs the app's Service Bus and timer triggers until the block ends.
"""

from .app import AppLoadError, FunctionSpec
from .config import HostConfigError, HostOptions, MissingSettingsError, parse_timespan
from .host import FunctionsHost, FunctionTimeout, running_host
from .ncrontab import Schedule, ScheduleError
from .outputs import Out, OutputHandler, SignalRRestOutput
from .records import Invocation

__all__ = [
    "AppLoadError",
    "FunctionSpec",
    "FunctionTimeout",
    "FunctionsHost",
    "HostConfigError",
    "HostOptions",
    "Invocation",
    "MissingSettingsError",
    "Out",
    "OutputHandler",
    "Schedule",
    "ScheduleError",
    "SignalRRestOutput",
    "parse_timespan",
    "running_host",
]
