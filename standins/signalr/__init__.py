"""SignalR Service REST stand-in (serverless mode): records messages per hub and user.

`SignalRServer` serves the data-plane REST API on a free port and gives the connection
string for `AzureSignalRConnectionString`; `SignalRRestClient` sends output-binding
messages to it (or to a real service) the way the Functions binding does.
"""

from standins.signalr.auth import ConnectionString, TokenError, make_token, verify_token
from standins.signalr.client import SignalRRestClient, SignalRRestError
from standins.signalr.server import DEFAULT_ACCESS_KEY, SignalRServer, create_app
from standins.signalr.store import SignalRMessage, SignalRStore

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
