"""SignalR Service REST stand-in (serverless mode): records messages per hub and user.

`SignalRServer` serves the data-plane REST API on a free port and gives the connection
string for `AzureSignalRConnectionString`; `SignalRRestClient` sends output-binding
messages to it (or to a real service) the way the Functions binding does.
"""

from emulator.signalr.auth import ConnectionString, TokenError, make_token, verify_token
from emulator.signalr.client import SignalRRestClient, SignalRRestError
from emulator.signalr.server import DEFAULT_ACCESS_KEY, SignalRServer, create_app
from emulator.signalr.store import SignalRMessage, SignalRStore

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "ConnectionString",
    "SignalRMessage",
    "SignalRRestClient",
    "SignalRRestError",
    "SignalRServer",
    "SignalRStore",
    "TokenError",
    "create_app",
    "make_token",
    "verify_token",
]
