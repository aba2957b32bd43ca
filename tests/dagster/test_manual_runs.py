"""Materialize by hand (the UI's button, `dg.materialize`) in batch mode: no sensor needed."""

import dagster as dg
import polars as pl

import metaxy_dagster as mxd
from metaxy_dagster._partitions import write_manual_manifests
from tests.core import video
from tests.dagster.pipeline import COMPUTES
from tests.dagster.sensing import tick

SENSOR = "metaxy_increment_sensor"
FEATURES = ("video", "crop", "face_detection", "transcript")


def definitions(graph, store, source) -> dg.Definitions:
    resource = mxd.MetaxyStore(graph=graph, store=store)
    return mxd.build_definitions(graph, COMPUTES, {"video": source}, store=resource)


def materialize_partition(defs: dg.Definitions, instance, key: str) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("metaxy_batches", [key])  # the UI's "Add partition"
    job = defs.resolve_job_def("metaxy_job")
    return job.execute_in_process(instance=instance, partition_key=key)


def test_a_partition_added_by_hand_computes_the_current_increment(graph, store, source, instance):
    defs = definitions(graph, store, source)
    assert materialize_partition(defs, instance, "manual-1").success
    assert all(store.read(k).height == 25 for k in FEATURES)
    manifest = store.read_batch("manual-1")
    assert manifest["kind"] == "manual" and manifest["size"] == 25
    # The sensor adopts the finished manual batch and finds nothing left to do.
    assert isinstance(tick(defs, SENSOR, instance), dg.SkipReason)
    assert store.read_batch("manual-1")["status"] == "done"


def test_rerunning_a_manual_partition_repeats_its_manifest(graph, store, source, instance):
    defs = definitions(graph, store, source)
    assert materialize_partition(defs, instance, "manual-1").success
    source.frame = video.inputs(30)  # five new samples arrive
    job = defs.resolve_job_def("metaxy_job")
    assert job.execute_in_process(instance=instance, partition_key="manual-1").success
    assert store.read("video").height == 25  # the manifest names the first 25 only
    assert materialize_partition(defs, instance, "manual-2").success
    assert store.read("crop").height == 30 and store.batch_ids("manual-2").height == 5


def test_materializing_one_asset_by_hand_runs_only_its_increment(graph, store, source, instance):
    defs = definitions(graph, store, source)
    instance.add_dynamic_partitions("metaxy_batches", ["only-video"])
    assets = [defs.resolve_assets_def("video")]
    result = dg.materialize(assets, instance=instance, partition_key="only-video")
    assert result.success and store.read("video").height == 25
    assert not store.has_feature("crop")


def test_manual_manifests_are_bounded_like_a_sensor_batch(graph, store):
    inc = store.resolve_update("video", samples=video.inputs(40))
    assert write_manual_manifests(store, ["m"], inc, limit=16) == ["m"]
    assert store.batch_ids("m")["sample_id"].to_list() == sorted(video.inputs(40)["sample_id"])[:16]
    assert write_manual_manifests(store, ["m"], inc, limit=16) == []  # an existing one is kept
    assert pl.Series(store.batches()["batch_key"]).to_list() == ["m"]
