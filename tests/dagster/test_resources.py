"""The store resource builds the configured store and passes its settings through."""

import polars as pl
import pytest
from dagster_deltalake import S3Config
from dagster_deltalake.config import ClientConfig
from dagster_duckdb import DuckDBResource

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.core.video import inputs
from tests.dagster.pipeline import COMPUTES, Source
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


def test_duckdb_resource_gives_the_store_its_file_and_connection_config(graph, tmp_path):
    duckdb = DuckDBResource(
        database=str(tmp_path / "shared.duckdb"), connection_config={"threads": 1}
    )
    resource = mxd.MetaxyStore(graph=graph, duckdb=duckdb)
    store = resource.open()
    assert isinstance(store, mx.DuckDBStore) and store.path == tmp_path / "shared.duckdb"
    rows = store.resolve_update("video", samples=inputs(3)).new
    resource.write("video", rows.with_columns(path=pl.lit("v.mp4")))
    # The user's own assets reach the same file through the resource while the store holds
    # it: DuckDB admits a second connection of one process only with the same options.
    with duckdb.get_connection() as con:
        assert con.sql("SELECT current_setting('threads')").fetchall() == [(1,)]
        assert con.sql("SELECT count(*) FROM metaxy_current.video").fetchall() == [(3,)]
    resource.close()


def test_a_bad_duckdb_connection_option_is_a_store_error(graph, tmp_path):
    duckdb = DuckDBResource(database=str(tmp_path / "m.duckdb"), connection_config={"nope": 1})
    with pytest.raises(mx.StoreError, match="nope"):
        mxd.MetaxyStore(graph=graph, duckdb=duckdb).open()


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"duckdb_path": "a.duckdb", "duckdb": DuckDBResource(database="b.duckdb")}, "b.duckdb"),
        ({"delta_uri": "/tmp/x", "duckdb": DuckDBResource(database="b.duckdb")}, "'duckdb'"),
        ({"delta_uri": "/tmp/x", "sql_url": "postgresql://h/db"}, "sql_url"),
        ({"delta_storage": S3Config(region="eu-west-1")}, "delta_storage"),
        ({"storage_options": {"region": "eu-west-1"}}, "delta_uri"),
        (
            {
                "delta_uri": "s3://b/m",
                "delta_storage": S3Config(region="eu-west-1"),
                "storage_options": {"region": "us-east-1"},
            },
            "'region'",
        ),
    ],
    ids=["two-files", "delta-and-duckdb", "delta-and-sql", "s3-no-uri", "options-no-uri", "region"],
)
def test_contradicting_storage_settings_are_refused_by_name(graph, settings, named):
    resource = mxd.MetaxyStore(graph=graph, **settings)
    with pytest.raises(mx.SpecError, match=named):
        mxd.build_definitions(graph, COMPUTES, {"video": Source(inputs(1))}, store=resource)
    with pytest.raises(mx.SpecError, match=named):
        resource.open()


def test_one_file_named_twice_is_not_a_conflict(graph, tmp_path):
    path = str(tmp_path / "m.duckdb")
    resource = mxd.MetaxyStore(graph=graph, duckdb_path=path, duckdb=DuckDBResource(database=path))
    assert resource.database_path == path
    assert isinstance(resource.open(), mx.DuckDBStore)
    resource.close()


def test_s3_config_and_client_config_reach_a_local_s3_server(graph, s3_uri, s3_server):
    s3 = S3Config(
        endpoint=s3_server["AWS_ENDPOINT_URL"],
        access_key_id=s3_server["AWS_ACCESS_KEY_ID"],
        secret_access_key=s3_server["AWS_SECRET_ACCESS_KEY"],
        region=s3_server["AWS_REGION"],
    )
    resource = mxd.MetaxyStore(
        graph=graph, delta_uri=s3_uri, delta_storage=s3, delta_client=ClientConfig(allow_http=True)
    )
    assert resource.delta_storage_options["allow_http"] == "True"
    assert not resource.is_single_writer
    rows = resource.open().resolve_update("video", samples=inputs(4)).new
    assert resource.write("video", rows.with_columns(path=pl.lit("v.mp4"))) == 4
    resource.close()
    with mx.DeltaStore(s3_uri, graph, storage_options=s3_server) as store:
        assert store.read("video").height == 4
