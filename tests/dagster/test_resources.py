"""The store resource builds the configured store and passes its settings through."""

import polars as pl
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.core.video import inputs
from tests.stores.test_duckdb import HOLD_LOCK, first_line, running


def test_duckdb_lock_timeout_is_configurable(graph, tmp_path):
    path = tmp_path / "meta.duckdb"
    resource = mxd.MetaxyStore(graph=graph, duckdb_path=str(path), lock_timeout=0.3)
    with running(HOLD_LOCK, str(path), "30") as holder:
        assert first_line(holder) == "locked"
        with pytest.raises(mx.StoreLockedError, match=r"0\.3 s"):
            resource.open()


def test_delta_uri_builds_a_delta_store(graph, tmp_path):
    resource = mxd.MetaxyStore(graph=graph, delta_uri=str(tmp_path / "delta"))
    assert isinstance(resource.open(), mx.DeltaStore)
    assert isinstance(
        mxd.MetaxyStore(graph=graph, duckdb_path=str(tmp_path / "m.duckdb")).open(), mx.DuckDBStore
    )


def test_every_config_field_is_described_and_leads_help():
    import pydoc

    fields = mxd.MetaxyStore.model_fields
    assert all(f.description for f in fields.values()), [
        n for n, f in fields.items() if not f.description
    ]
    text = pydoc.render_doc(mxd.MetaxyStore, renderer=pydoc.plaintext)
    head = text.split("Method resolution order")[0]
    for name, field in fields.items():
        assert f"{name}: {field.description}" in " ".join(head.split()), name


def test_sql_url_builds_a_sql_store_that_several_processes_may_write(graph, postgres_url):
    resource = mxd.MetaxyStore(graph=graph, sql_url=postgres_url, hash_algorithm="md5")
    store = resource.open()
    assert isinstance(store, mx.SQLStore) and not resource.is_single_writer
    rows = store.resolve_update("video", samples=inputs(3)).new
    assert resource.write("video", rows.with_columns(path=pl.lit("v.mp4"))) == 3
    resource.close()
    with mx.SQLStore(postgres_url, graph) as reopened:
        assert reopened.read("video")["sample_id"].to_list() == ["s0000", "s0001", "s0002"]
