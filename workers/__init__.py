"""Azure Functions workers and job API of the seed system, rebuilt in Python.

The package knows nothing of the emulator or harness: it reads its settings from the
environment, exactly as it would in Azure. What it shares with the local host (host.json
overrides, the offset clock) is in `functions_shared`, which ships with the apps.
"""
