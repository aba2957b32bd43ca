"""Increment and cleanup sensors evaluated through a real context on a temporary instance."""

import dagster as dg
import polars as pl
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from metaxy_dagster import _partitions as mxd_partitions
from tests.core import video
from tests.dagster.pipeline import COMPUTES, Source
from tests.dagster.sensing import execute, requests, tick

SENSOR = "metaxy_increment_sensor"


def definitions(graph, store, source, **kwargs) -> dg.Definitions:
    resource = mxd.MetaxyStore(graph=graph, store=store)
    return mxd.build_definitions(graph, COMPUTES, {"video": source}, store=resource, **kwargs)


def run_all(defs, result, instance):
    for request in requests(result):
        assert execute(defs, request, instance).success


def settle(defs, instance):
    """Tick and run until the sensor finds nothing (first full materialization)."""
    for _ in range(5):
        result = tick(defs, SENSOR, instance)
        if isinstance(result, dg.SkipReason):
            return
        run_all(defs, result, instance)
    raise AssertionError("the sensor never settled")


def written_by(store, run_id) -> dict[str, int]:
    return {
        k: store.history(k).filter(pl.col("metaxy_materialization_id") == run_id).height
        for k in ("video", "crop", "face_detection", "transcript")
    }


def test_first_tick_batches_everything_then_second_tick_skips(graph, store, source, instance):
    defs = definitions(graph, store, source)
    result = tick(defs, SENSOR, instance)
    (request,) = requests(result)
    assert request.run_key == request.partition_key
    assert instance.get_dynamic_partitions("metaxy_batches") == [request.partition_key]
    assert store.batch_ids(request.partition_key).height == 25
    assert [k.to_user_string() for k in request.asset_selection] == [
        "video",
        "crop",
        "face_detection",
        "transcript",
    ]
    run = execute(defs, request, instance)
    assert run.success
    assert all(
        store.read(k).height == 25 for k in ("video", "crop", "face_detection", "transcript")
    )
    assert all(e.passed for e in run.get_asset_check_evaluations())
    assert isinstance(tick(defs, SENSOR, instance), dg.SkipReason)
    assert store.batches()["status"].to_list() == ["done"]


def test_reevaluating_a_tick_never_launches_a_batch_twice(graph, store, source, instance):
    defs = definitions(graph, store, source)
    (first,) = requests(tick(defs, SENSOR, instance))
    # The run was not launched: the request is re-sent with the same run key (the daemon
    # deduplicates it) and no new batch or partition is made.
    again = tick(defs, SENSOR, instance)
    assert [r.run_key for r in requests(again)] == [first.run_key]
    assert not again.dynamic_partitions_requests
    assert store.batches().height == 1
    assert execute(defs, first, instance).success
    assert isinstance(tick(defs, SENSOR, instance), dg.SkipReason)


def test_two_changed_inputs_make_one_batch_and_two_rows_per_affected_feature(
    graph, store, source, instance
):
    defs = definitions(graph, store, source)
    settle(defs, instance)
    source.frame = video.inputs(25, audio_suffix="-v2", changed=2)
    (request,) = requests(tick(defs, SENSOR, instance))
    assert sorted(store.batch_ids(request.partition_key)["sample_id"]) == ["s0000", "s0001"]
    assert [k.to_user_string() for k in request.asset_selection] == ["video", "crop", "transcript"]
    run = execute(defs, request, instance)
    assert written_by(store, run.run_id) == {
        "video": 2,
        "crop": 2,
        "face_detection": 0,
        "transcript": 2,
    }
    assert isinstance(tick(defs, SENSOR, instance), dg.SkipReason)


def test_code_bump_selects_only_features_downstream_of_the_field(graph, store, source, instance):
    settle(definitions(graph, store, source), instance)
    bumped = video.bump(graph, "crop", "frames", "2")
    store.graph = bumped
    defs = definitions(bumped, store, source)
    (request,) = requests(tick(defs, SENSOR, instance))
    assert [k.to_user_string() for k in request.asset_selection] == ["crop", "face_detection"]
    run = execute(defs, request, instance)
    assert written_by(store, run.run_id) == {
        "video": 0,
        "crop": 25,
        "face_detection": 25,
        "transcript": 0,
    }
    assert isinstance(tick(defs, SENSOR, instance), dg.SkipReason)


def test_removed_samples_are_tombstoned_by_a_batch_run(graph, store, source, instance):
    defs = definitions(graph, store, source)
    settle(defs, instance)
    source.frame = video.inputs(25).filter(pl.col("sample_id") != "s0004")
    (request,) = requests(tick(defs, SENSOR, instance))
    assert store.batch_ids(request.partition_key)["sample_id"].to_list() == ["s0004"]
    execute(defs, request, instance)
    for key in ("video", "crop", "face_detection", "transcript"):
        assert "s0004" not in store.read(key)["sample_id"].to_list()
        assert store.read(key).height == 24


def test_batch_limits_bound_each_tick(graph, store, source, instance):
    defs = definitions(
        graph,
        store,
        source,
        sensor_options={"max_batch_size": 4, "max_batches_per_tick": 2, "max_open_batches": 5},
    )
    sizes = []
    for _ in range(4):
        result = tick(defs, SENSOR, instance)
        added = [k for r in result.dynamic_partitions_requests for k in r.partition_keys]
        sizes.append([store.batch_ids(k).height for k in added])
    assert sizes == [[4, 4], [4, 4], [4], []]
    keys = instance.get_dynamic_partitions("metaxy_batches")
    assert keys == sorted(keys) and len(keys) == 5


def test_none_mode_launches_one_unpartitioned_run(graph, store, source, instance):
    defs = definitions(graph, store, source, mode="none")
    (request,) = requests(tick(defs, SENSOR, instance))
    assert request.partition_key is None
    assert execute(defs, request, instance).success
    assert store.read("transcript").height == 25
    assert isinstance(tick(defs, SENSOR, instance), dg.SkipReason)


def test_sample_mode_makes_one_partition_per_sample(graph, store, source, instance):
    settle(definitions(graph, store, source), instance)  # one batch run instead of 25 sample runs
    defs = definitions(graph, store, source, mode="sample")
    source.frame = video.inputs(25, audio_suffix="-v2", changed=2)
    result = tick(defs, SENSOR, instance)
    assert sorted(r.partition_key for r in requests(result)) == ["s0000", "s0001"]
    run_all(defs, result, instance)
    assert isinstance(tick(defs, SENSOR, instance), dg.SkipReason)


def test_sample_mode_over_the_cap_is_refused_naming_batch(graph, store, source, instance):
    defs = definitions(
        graph, store, source, mode="sample", sensor_options={"max_sample_partitions": 10}
    )
    with pytest.raises(mx.MetaxyError, match="batch"):
        tick(defs, SENSOR, instance)


def test_cleanup_keeps_the_configured_number_of_finished_partitions(graph, store, source, instance):
    # Three batches (9 + 9 + 7 samples), one run each: the two oldest go, the newest stays.
    defs = definitions(
        graph, store, source, keep_partitions=1, sensor_options={"max_batch_size": 9}
    )
    settle(defs, instance)
    assert len(instance.get_dynamic_partitions("metaxy_batches")) == 3
    tick(defs, "metaxy_cleanup_sensor", instance)
    assert (
        instance.get_dynamic_partitions("metaxy_batches")
        == sorted(store.batches()["batch_key"])[-1:]
    )
    assert store.read("transcript").height == 25
    assert isinstance(tick(defs, "metaxy_cleanup_sensor", instance), dg.SkipReason)


def test_limits_above_dagsters_per_tick_guidance_are_refused(graph, store, source):
    with pytest.raises(mx.SpecError, match="25000"):
        definitions(graph, store, source, sensor_options={"max_batches_per_tick": 30_000})


@pytest.mark.slow
def test_100k_samples_in_batch_mode_stay_within_tick_limits(graph, store, instance):
    source = Source(video.inputs(100_000))
    options = {"max_batch_size": 7_000, "max_batches_per_tick": 4, "max_open_batches": 1_000}
    defs = definitions(graph, store, source, sensor_options=options)
    batched, ticks = 0, 0
    while True:
        result = tick(defs, SENSOR, instance)
        ticks += 1
        # Runs are never launched here, so open batches are re-sent (same run keys) each tick.
        partition_requests = getattr(result, "dynamic_partitions_requests", None) or []
        added = [k for r in partition_requests for k in r.partition_keys]
        if not added:
            break
        fresh = [r for r in requests(result) if r.partition_key in added]
        assert len(added) == len(fresh) <= 4
        batched += sum(store.batch_ids(k).height for k in added)
    assert batched == 100_000
    assert ticks == 4 + 1  # ceil(100k / 7k) = 15 batches, 4 per tick, then a skip


@pytest.mark.slow
def test_default_duckdb_store_through_sensor_and_run(graph, source, instance, tmp_path):
    resource = mxd.MetaxyStore(graph=graph, duckdb_path=str(tmp_path / "meta.duckdb"))
    defs = mxd.build_definitions(graph, COMPUTES, {"video": source}, store=resource)
    (request,) = requests(tick(defs, SENSOR, instance))
    run = execute(defs, request, instance)
    assert run.success and all(e.passed for e in run.get_asset_check_evaluations())
    source.frame = video.inputs(25, audio_suffix="-v2", changed=2)
    (request,) = requests(tick(defs, SENSOR, instance))
    run = execute(defs, request, instance)
    assert isinstance(tick(defs, SENSOR, instance), dg.SkipReason)
    with mx.DuckDBStore(str(tmp_path / "meta.duckdb"), graph) as store:
        assert written_by(store, run.run_id) == {
            "video": 2,
            "crop": 2,
            "face_detection": 0,
            "transcript": 2,
        }


def test_runs_execute_in_one_process_unless_asked_otherwise(graph, store, source):
    job = definitions(graph, store, source).resolve_job_def("metaxy_job")
    assert job.executor_def.name == dg.in_process_executor.name
    job = definitions(graph, store, source, executor=None).resolve_job_def("metaxy_job")
    assert job.executor_def.name != dg.in_process_executor.name


def test_sample_partition_keys_are_distinct_and_valid_for_odd_ids():
    rows = [
        {"a": "x.y", "b": "z"},
        {"a": "x", "b": "y.z"},
        {"a": "x...y", "b": ""},
        {"a": "", "b": ""},
        {"a": "%", "b": "line\nbreak"},
        {"a": "%25", "b": "tab\t"},
    ]
    keys = [mxd_partitions.sample_partition_key(r) for r in rows]
    assert len(set(keys)) == len(rows)
    dg.StaticPartitionsDefinition(keys)  # refuses keys Dagster cannot take ("...", controls)
    assert mxd_partitions.sample_partition_key({"sample_id": "s0000"}) == "s0000"


class Clip(
    mx.Feature,
    spec=mx.FeatureSpec(
        "clip",
        id_columns=["video_id", "clip"],
        fields=[mx.FieldSpec("frames", deps={"video": ["frames"]})],
        deps=[
            mx.FeatureDep(
                "video",
                rename={"sample_id": "video_id"},
                lineage=mx.Lineage.expansion(on=["video_id"]),
            )
        ],
    ),
):
    clip: str


def test_changes_keyed_by_no_features_id_columns_are_skipped_naming_them(instance):
    graph = mx.FeatureGraph([video.Video, Clip])
    store = mx.MemoryStore(graph)
    new = store.resolve_update("video", samples=video.inputs(3)).new
    store.write("video", new.with_columns(path=pl.lit("v.mp4")))
    resource = mxd.MetaxyStore(graph=graph, store=store)
    computes = {"video": COMPUTES["video"], "clip": COMPUTES["crop"]}
    sources = {"video": Source(video.inputs(3))}  # unchanged: only clip has work
    defs = mxd.build_definitions(graph, computes, sources, store=resource)
    result = tick(defs, SENSOR, instance)
    assert isinstance(result, dg.SkipReason)
    assert "clip" in result.skip_message and "mode='none'" in result.skip_message
