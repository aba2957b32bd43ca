"""The DuckDB file and the sensor deadline: busy files skip ticks; one writer runs at a time."""

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import polars as pl
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.core import video
from tests.dagster.pipeline import COMPUTES, Source
from tests.dagster.sensing import requests, tick

SENSOR = "metaxy_increment_sensor"
HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read")
print("holding", flush=True)
time.sleep(60)
"""


@pytest.fixture
def duckdb_file(tmp_path):
    path = tmp_path / "meta.duckdb"
    with mx.DuckDBStore(path, video.graph()) as store:  # a file with data in it
        rows = store.resolve_update("video", samples=video.inputs(3)).new
        store.write("video", rows.with_columns(path=pl.lit("v.mp4")))
    return path


@contextmanager
def hold(path, mode: str) -> Iterator[subprocess.Popen]:
    """Another process (a notebook) holding the file until the block ends."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), mode], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout.readline().strip() == "holding"
            yield holder
        finally:
            holder.kill()


def definitions(path, **store_options) -> dg.Definitions:
    graph = video.graph()
    resource = mxd.MetaxyStore(graph=graph, duckdb_path=str(path), **store_options)
    return mxd.build_definitions(
        graph, COMPUTES, {"video": Source(video.inputs(5))}, store=resource
    )


@pytest.mark.parametrize("mode", ["read", "write"])
def test_a_tick_against_a_held_file_skips_naming_the_holder(duckdb_file, instance, mode):
    with hold(duckdb_file, mode) as holder:
        defs = definitions(duckdb_file, sensor_lock_timeout=1.0, lock_timeout=120.0)
        result = tick(defs, SENSOR, instance)
        assert isinstance(result, dg.SkipReason)
        assert "locked by another process" in result.skip_message
        assert f"(PID {holder.pid})" in result.skip_message
        assert "waiting 1 s" in result.skip_message  # not the runs' 120 s lock_timeout
        # Runs wait the longer lock_timeout: the same open raises instead of skipping.
        run_side = mxd.MetaxyStore(
            graph=video.graph(), duckdb_path=str(duckdb_file), lock_timeout=0.5
        )
        with pytest.raises(mx.StoreLockedError, match=r"waiting 0\.5 s"):
            run_side.open()
    assert not isinstance(tick(defs, SENSOR, instance), dg.SkipReason)  # free again: it batches


def test_a_snapshot_reads_while_another_process_writes(duckdb_file):
    with (
        hold(duckdb_file, "read"),  # a reader shares the file; the snapshot copies it
        mx.DuckDBStore.snapshot(duckdb_file, video.graph()) as snapshot,
    ):
        assert snapshot.read("video").height == 3
    with mx.DuckDBStore.snapshot(duckdb_file, video.graph()) as snapshot:
        with mx.DuckDBStore(duckdb_file, video.graph(), lock_timeout=0) as writer:  # not blocked
            rows = writer.resolve_update("video", samples=video.inputs(4)).new
            writer.write("video", rows.with_columns(path=pl.lit("v.mp4")))
        assert snapshot.read("video").height == 3  # a copy: later writes are not seen
        with pytest.raises(mx.StoreError, match="read_only"):
            snapshot.write("video", snapshot.read("video"))


@pytest.mark.parametrize(("max_active_runs", "launches"), [("auto", False), (None, True)])
def test_one_run_at_a_time_on_a_duckdb_file(duckdb_file, instance, max_active_runs, launches):
    graph = video.graph()
    resource = mxd.MetaxyStore(graph=graph, duckdb_path=str(duckdb_file))
    defs = mxd.build_definitions(
        graph,
        COMPUTES,
        {"video": Source(video.inputs(5))},
        store=resource,
        sensor_options={"max_active_runs": max_active_runs},
    )
    instance.add_run(dg.DagsterRun(job_name="metaxy_job", status=dg.DagsterRunStatus.STARTED))
    result = tick(defs, SENSOR, instance)
    assert bool(requests(result)) is launches
    if not launches:
        assert "max_active_runs=1" in result.skip_message
