"""The root sources are observed on a schedule, so the UI never shows them 'Never observed'."""

import dagster as dg
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.core import video
from tests.dagster.pipeline import COMPUTES, Source


def definitions(graph, store, **kwargs) -> dg.Definitions:
    resource = mxd.MetaxyStore(graph=graph, store=store)
    source = Source(video.inputs(3))
    return mxd.build_definitions(graph, COMPUTES, {"video": source}, store=resource, **kwargs)


def test_a_schedule_observes_the_sources_and_records_their_data_version(graph, store, instance):
    defs = definitions(graph, store, sensors_running=True)
    schedule = defs.resolve_schedule_def("metaxy_observe_sources_schedule")
    assert schedule.cron_schedule == "*/5 * * * *"
    assert schedule.default_status is dg.DefaultScheduleStatus.RUNNING  # with the sensors
    with dg.build_schedule_context(instance=instance) as context:
        (request,) = schedule.evaluate_tick(context).run_requests
    job = defs.resolve_job_def(request.job_name or schedule.job_name)
    assert job.execute_in_process(instance=instance).success
    (record,) = instance.fetch_observations(dg.AssetKey("video_source"), limit=5).records
    observation = record.asset_observation
    assert observation.metadata["dagster/row_count"].value == 3
    assert observation.tags["dagster/data_version"]
    assert not store.has_feature("video")  # observing lists the source, computes nothing


@pytest.mark.parametrize(("minutes", "cron"), [(1, "*/1 * * * *"), (120, "0 */2 * * *")])
def test_the_interval_becomes_a_cron_schedule_stopped_unless_the_sensors_run(
    graph, store, minutes, cron
):
    schedule = definitions(graph, store, observe_interval_minutes=minutes).resolve_schedule_def(
        "metaxy_observe_sources_schedule"
    )
    assert schedule.cron_schedule == cron
    assert schedule.default_status is dg.DefaultScheduleStatus.STOPPED


def test_no_schedule_when_disabled_and_odd_intervals_are_refused(graph, store):
    defs = definitions(graph, store, observe_interval_minutes=None)
    assert not list(defs.schedules or [])
    with pytest.raises(mx.SpecError, match="observe_interval_minutes=7"):
        definitions(graph, store, observe_interval_minutes=7)
