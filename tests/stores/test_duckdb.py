"""DuckDBStore passes the store contract, plus what only a database file has: locks, crashes."""

import pytest

import metaxy_core as mx
from tests.stores.contract import StoreContract


class TestDuckDBStore(StoreContract):
    @pytest.fixture
    def store_factory(self, tmp_path):
        def make(graph: mx.FeatureGraph, **kw) -> mx.DuckDBStore:
            return mx.DuckDBStore(tmp_path / "metadata.duckdb", graph, **kw)

        return make
