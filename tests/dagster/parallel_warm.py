"""Imported once by the fork server of parallel runs: what every step process needs first.

A step process starts by opening the Dagster instance (its SQLite storages, their migration
checks) and loading the executor's machinery; imported here, each forked step skips that
second of imports.
"""

import tempfile

import dagster as dg

with tempfile.TemporaryDirectory() as _home, dg.instance_for_test(temp_dir=_home):
    pass
