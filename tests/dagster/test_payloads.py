"""Payload assets: data beside the metadata, through Dagster's own Delta and DuckDB IO managers.

The crop feature's metadata goes to the metaxy store; a payload asset writes each batch's
frames through `DeltaLakePolarsIOManager` or `DuckDBPolarsIOManager` (one batch partition, one
payload write, overwritten when the batch reruns), and the sensor selects it with the feature.
"""

import dagster as dg
import polars as pl
import pytest
from dagster_deltalake import LocalConfig
from dagster_deltalake_polars import DeltaLakePolarsIOManager
from dagster_duckdb import DuckDBResource
from dagster_duckdb_polars import DuckDBPolarsIOManager
from deltalake import DeltaTable

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.core.video import inputs
from tests.dagster.pipeline import COMPUTES, Source
from tests.dagster.sensing import execute, requests, tick

# dagster-deltalake 0.29 calls pydantic's deprecated `.dict()` and Dagster's deprecated
# `log.warn`: warnings are errors here, and these are theirs to fix, not the users'.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:The `dict` method is deprecated:pydantic.warnings.PydanticDeprecatedSince20"
    ),
    pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning"),
]
SENSOR = "metaxy_increment_sensor"
PAYLOAD = dg.AssetKey("crop_frames")


@dg.asset(
    key=PAYLOAD,
    partitions_def=mxd.batch_partitions(),
    io_manager_key="payload_io_manager",
    metadata={"partition_expr": "metaxy_batch"},
    ins={"crop": dg.AssetIn(mxd.feature_asset_key("crop"))},
)
def crop_frames(context: dg.AssetExecutionContext, crop: pl.DataFrame) -> pl.DataFrame:
    # `crop`: the feature's live rows of this batch's samples (a rerun gives the same rows).
    return crop.select(
        "sample_id",
        mx.columns.PROVENANCE,
        frames=pl.concat_list([pl.lit(0.5), pl.lit(1.5)]),
        metaxy_batch=pl.lit(context.partition_key),
    )


def _backend(kind: str, tmp_path, graph: mx.FeatureGraph):
    """The metaxy store resource, the payload IO manager and a reader of the payload table."""
    if kind == "delta":
        table = tmp_path / "payload" / "public" / "crop_frames"
        store = mxd.MetaxyStore(graph=graph, delta_uri=str(tmp_path / "meta"))
        io = DeltaLakePolarsIOManager(
            root_uri=str(tmp_path / "payload"), storage_options=LocalConfig()
        )
        return (
            store,
            io,
            lambda: pl.read_delta(str(table)),
            lambda: len(DeltaTable(str(table)).history()),
        )
    database = str(tmp_path / "meta.duckdb")  # the payload lives in the metadata's file
    duckdb = DuckDBResource(database=database)
    store = mxd.MetaxyStore(graph=graph, duckdb=duckdb)

    def read() -> pl.DataFrame:
        with duckdb.get_connection() as con:
            return con.sql("SELECT * FROM public.crop_frames").pl()

    return store, DuckDBPolarsIOManager(database=database), read, None


@pytest.mark.parametrize("kind", ["delta", "duckdb"])
def test_payload_is_written_per_batch_through_dagster_io_managers(graph, instance, tmp_path, kind):
    store, io, read_payload, commits = _backend(kind, tmp_path, graph)
    source = Source(inputs(25))
    defs = dg.Definitions.merge(
        mxd.build_definitions(
            graph,
            {k: COMPUTES[k] for k in ("video", "crop")},
            {"video": source},
            store=store,
            sensor_options={"max_batch_size": 13},
            payload_assets=[crop_frames],
            exclude=["face_detection", "transcript"],  # two features keep the runs short
        ),
        dg.Definitions(resources={"payload_io_manager": io}),
    )
    first = requests(tick(defs, SENSOR, instance))
    assert len(first) == 2 and all(PAYLOAD in r.asset_selection for r in first)
    for request in first:
        assert execute(defs, request, instance).success
    payload = read_payload()
    assert payload.height == 25 and payload["sample_id"].n_unique() == 25
    assert payload.group_by("metaxy_batch").len()["len"].sort().to_list() == [12, 13]
    if commits is None:  # DuckDB: the payload shares the metadata's file; enough shown
        return
    assert commits() == 2  # one batch partition, one payload write

    assert execute(defs, first[0], instance).success  # a rerun overwrites its partition
    assert read_payload().height == 25

    source.frame = inputs(25).with_columns(
        frames=pl.when(pl.col("sample_id") <= "s0001").then(pl.lit("new")).otherwise("frames")
    )
    second = requests(tick(defs, SENSOR, instance))
    assert len(second) == 1 and PAYLOAD in second[0].asset_selection
    assert execute(defs, second[0], instance).success
    payload = read_payload()
    assert payload.height == 27  # the old payload of the two samples stays in its batch
    live = store.open().read("crop").select("sample_id", mx.columns.PROVENANCE)
    current = payload.join(live, on=["sample_id", mx.columns.PROVENANCE], how="semi")
    assert current.height == 25 and current["sample_id"].n_unique() == 25


@pytest.mark.parametrize(
    ("asset", "message"),
    [
        ("not an asset", "takes assets"),
        (dg.AssetSpec("x").with_io_manager_key("io"), "takes assets"),
    ],
)
def test_payload_assets_are_checked(graph, asset, message):
    with pytest.raises(mx.SpecError, match=message):
        mxd.build_definitions(graph, COMPUTES, {"video": Source(inputs(1))}, payload_assets=[asset])


def test_a_payload_must_read_a_feature_and_share_its_partitions(graph):
    @dg.asset(partitions_def=mxd.batch_partitions())
    def alone() -> None: ...

    @dg.asset(deps=[mxd.feature_asset_key("crop")])
    def unpartitioned() -> None: ...

    with pytest.raises(mx.SpecError, match="depends on no feature"):
        mxd.build_definitions(graph, COMPUTES, {"video": Source(inputs(1))}, payload_assets=[alone])
    with pytest.raises(mx.SpecError, match="partitioned by None"):
        mxd.build_definitions(
            graph, COMPUTES, {"video": Source(inputs(1))}, payload_assets=[unpartitioned]
        )
