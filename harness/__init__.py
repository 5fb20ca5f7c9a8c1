"""Runs the worker apps against a local stack: the local Functions host and its helpers.

The host (`harness.host`) honours host.json the way the Azure Functions host does, so the
unmodified `function_app.py` files can be exercised on one machine.
"""
