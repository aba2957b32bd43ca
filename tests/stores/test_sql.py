"""SQLStore passes the store contract on a real PostgreSQL server (ClickHouse: see its module)."""

import pytest

import metaxy_core as mx
from tests.stores.contract import StoreContract


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store_factory(self, postgres_url):
        def make(graph: mx.FeatureGraph, **kw) -> mx.SQLStore:
            return mx.SQLStore(postgres_url, graph, **kw)

        return make
