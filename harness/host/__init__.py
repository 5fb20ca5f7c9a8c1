"""A local Azure Functions host for Python v2 apps that honours host.json.

`FunctionsHost.load(app_dir, settings=...)` imports and indexes an app folder; used as a
context manager it runs the app's Service Bus and timer triggers until the block ends. The
host takes the settings as data; `ProcessEnvironment` puts them where an in-process app
reads them (`os.environ`) and takes them out again.
"""

from .app import AppLoadError, FunctionSpec
from .config import HostConfigError, HostOptions, MissingSettingsError, parse_timespan
from .environ import ProcessEnvironment
from .host import FunctionsHost, running_host
from .invoke import FunctionTimeout
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
    "ProcessEnvironment",
    "Schedule",
    "ScheduleError",
    "SignalRRestOutput",
    "parse_timespan",
    "running_host",
]
