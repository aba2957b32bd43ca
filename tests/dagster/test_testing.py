"""metaxy_dagster.testing drives a code location like the daemon: ticks, partitions, runs."""

import dagster as dg
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from metaxy_dagster.testing import SensorTester, apply_partition_requests
from tests.core import video
from tests.dagster.pipeline import COMPUTES, Source


def test_a_step_batches_runs_and_counts_then_the_next_tick_skips(graph, store, instance):
    source = Source(video.inputs(5))
    resource = mxd.MetaxyStore(graph=graph, store=store)
    defs = mxd.build_definitions(graph, COMPUTES, {"video": source}, store=resource)
    tester = SensorTester(defs, instance)

    first = tester.step()
    assert first.success and len(first.runs) == 1
    assert instance.get_dynamic_partitions("metaxy_batches") == first.added_partitions
    assert first.runs[0].dagster_run.tags["dagster/run_key"] == first.run_requests[0].run_key
    video_counts = {"new": 5, "stale": 0, "orphaned": 0, "rows_written": 5}
    assert first.feature_counts()["video"] == video_counts
    (materialized,) = [m for m in first.materializations() if m.asset_key.path == ["video"]]
    assert materialized.partition == first.added_partitions[0]
    assert materialized.metadata["dagster/partition_row_count"].value == 5
    (settled,) = tester.settle()  # nothing changed: the first step skips, and runs nothing
    assert settled.skipped and settled.runs == ()
    assert settled.skip_reason.startswith("No changed samples")


def test_settle_refuses_a_sensor_that_never_stops(instance):
    job = dg.define_asset_job("noop", selection=dg.AssetSelection.assets("thing"))

    @dg.asset
    def thing() -> None:
        return None

    @dg.sensor(job=job)
    def forever(context):
        return dg.RunRequest()

    defs = dg.Definitions(assets=[thing], jobs=[job], sensors=[forever])
    with pytest.raises(mx.MetaxyError, match="still requested runs after 2 steps"):
        SensorTester(defs, instance, sensor="forever").settle(max_steps=2)


def test_an_ephemeral_instance_is_refused_by_name():
    defs = dg.Definitions(sensors=[dg.SensorDefinition("idle", evaluation_fn=lambda _: None)])
    with pytest.raises(mx.MetaxyError, match="instance_for_test"):
        SensorTester(defs, dg.DagsterInstance.ephemeral(), sensor="idle")


def test_the_cursor_carries_from_tick_to_tick_and_across_a_reload(instance):
    seen = []

    @dg.sensor(name="counting")
    def counting(context):
        seen.append(context.cursor)
        return dg.SensorResult(skip_reason="nothing", cursor=str(int(context.cursor or 0) + 1))

    defs = dg.Definitions(sensors=[counting])
    tester = SensorTester(defs, instance, sensor="counting")
    assert tester.tick().cursor == "1"
    tester.reload(dg.Definitions(sensors=[counting]))
    assert tester.tick().skip_reason == "nothing"
    assert seen == [None, "1"] and tester.cursor == "2"


def test_partition_requests_add_and_delete(instance):
    batches = mxd.batch_partitions()
    apply_partition_requests(instance, [batches.build_add_request(["a", "b", "c"])])
    apply_partition_requests(instance, [batches.build_delete_request(["a", "c"])])
    assert instance.get_dynamic_partitions(batches.name) == ["b"]
