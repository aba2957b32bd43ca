"""MemoryStore passes the store contract (the reference every other store is compared with)."""

import pytest

import metaxy_core as mx
from tests.stores.contract import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store_factory(self):
        tables: dict = {}  # the "location": every store made here shares these tables

        def make(graph: mx.FeatureGraph, **kw) -> mx.MemoryStore:
            store = mx.MemoryStore(graph, **kw)
            store._tables = tables
            store._open()
            return store

        return make
