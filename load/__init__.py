"""Locust capacity profiles for the job API: a creator-app user, the 50/100/500-user tiers
and a capacity report (see docs/load.md).

`locust -f load/` imports every `.py` file here whose name does not start with `_` as a
top-level locustfile. `locustfile.py` is meant to be the only one, so the helper modules
are underscored: as locustfiles their relative imports would fail, and they would be
loaded a second time beside the `load._...` copies that `locustfile.py` uses.
"""
