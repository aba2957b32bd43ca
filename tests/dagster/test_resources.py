"""The store resource builds the configured store and passes its settings through."""

import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
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
