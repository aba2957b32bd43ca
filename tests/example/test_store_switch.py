"""The example switches to the Delta store with one environment variable (METAXY_STORE=delta)."""

import dagster as dg
import pytest

import metaxy_core as mx
from example_project.definitions import PARALLEL_EXECUTOR, build_defs
from tests.dagster.sensing import requests, tick


def test_metaxy_store_delta_gives_a_delta_store_and_parallel_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("METAXY_STORE", "delta")
    defs = build_defs(directory=tmp_path)
    resource = defs.resources["metaxy_store"]
    assert resource.delta_uri == str(tmp_path / "delta") and not resource.is_single_writer
    assert defs.resolve_job_def("metaxy_job").executor_def is PARALLEL_EXECUTOR
    assert isinstance(resource.open(), mx.DeltaStore)
    with dg.instance_for_test() as instance:
        (batch,) = requests(tick(defs, "metaxy_increment_sensor", instance))
    assert batch.partition_key in resource.open().batches()["batch_key"].to_list()


def test_the_default_store_stays_one_duckdb_file(tmp_path, monkeypatch):
    monkeypatch.delenv("METAXY_STORE", raising=False)
    resource = build_defs(directory=tmp_path).resources["metaxy_store"]
    assert resource.database_path == str(tmp_path / "metaxy.duckdb") and resource.is_single_writer


def test_an_unknown_store_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("METAXY_STORE", "parquet")
    with pytest.raises(mx.SpecError, match="METAXY_STORE='parquet'"):
        build_defs(directory=tmp_path)
