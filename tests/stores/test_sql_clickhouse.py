"""SQLStore passes the store contract on ClickHouse, when a server is named.

No ClickHouse server installs from the project's own files (see `tests/conftest.py`),
so this module is skipped, with the reason, unless METAXY_CLICKHOUSE_URL is set.
"""

import os

import pytest

import metaxy_core as mx
from tests.conftest import CLICKHOUSE_SKIP
from tests.stores.contract import StoreContract

if not os.environ.get("METAXY_CLICKHOUSE_URL"):
    pytest.skip(CLICKHOUSE_SKIP, allow_module_level=True)


class TestClickHouseStore(StoreContract):
    @pytest.fixture
    def store_factory(self, clickhouse_url):
        def make(graph: mx.FeatureGraph, **kw) -> mx.SQLStore:
            return mx.SQLStore(clickhouse_url, graph, **kw)

        return make
