"""Azure Functions workers and job API of the seed system, rebuilt in Python.

The package knows nothing of the emulator or harness: it reads its settings from the
environment, exactly as it would in Azure.
"""
