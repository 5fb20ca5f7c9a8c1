"""Shared library of the worker apps and the job API (contracts, storage, retry, AI)."""
