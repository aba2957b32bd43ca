"""Increment sensor over the example graph: expansion (augmented), aggregation (class_summary)."""

import dagster as dg
import polars as pl

import metaxy_core as mx
import metaxy_dagster as mxd
from example_project import digits
from example_project.definitions import _dagster_compute
from example_project.features import feature_graph, with_code_version
from example_project.pipeline import compute_image
from tests.dagster.pipeline import Source
from tests.dagster.sensing import execute, requests, tick

SENSOR = "metaxy_increment_sensor"


def definitions(graph, store, images: Source) -> dg.Definitions:
    computes = {k.path: _dagster_compute(k.path, None) for k in graph.keys}
    computes["image"] = lambda context, inc: compute_image(inc.to_compute(), images())
    sources = {"image": lambda: digits.input_versions(images())}
    resource = mxd.MetaxyStore(graph=graph, store=store)
    return mxd.build_definitions(graph, computes, sources, store=resource)


def settle(defs, instance):
    for _ in range(5):
        result = tick(defs, SENSOR, instance)
        if isinstance(result, dg.SkipReason):
            return
        for request in requests(result):
            assert execute(defs, request, instance).success
    raise AssertionError("the sensor never settled")


def selection(request) -> list[str]:
    return [k.to_user_string() for k in request.asset_selection]


def bumped(store, feature, field) -> mx.FeatureGraph:
    store.graph = with_code_version(store.graph, feature, field, "2")
    return store.graph


def test_code_bump_on_an_expansion_batches_its_parent_ids(instance):
    images = Source(digits.load_images().head(12))
    store = mx.MemoryStore(feature_graph())
    settle(definitions(store.graph, store, images), instance)
    defs = definitions(bumped(store, "augmented", "pixels"), store, images)
    (request,) = requests(tick(defs, SENSOR, instance))
    assert selection(request) == ["augmented"]
    assert store.batch_ids(request.partition_key).columns == ["image_id"]
    assert store.batch_ids(request.partition_key).height == 12
    assert execute(defs, request, instance).success
    assert isinstance(tick(defs, SENSOR, instance), dg.SkipReason)
    assert store.resolve_update("augmented").is_empty


def test_open_batches_keyed_by_different_columns_do_not_break_later_ticks(instance):
    images = Source(digits.load_images().head(12))
    store = mx.MemoryStore(feature_graph())
    settle(definitions(store.graph, store, images), instance)
    defs = definitions(bumped(store, "class_summary", "centroid"), store, images)
    (by_digit,) = requests(tick(defs, SENSOR, instance))  # its run stays queued
    assert store.batch_ids(by_digit.partition_key).columns == ["digit"]
    relabelled = pl.col("image_id").is_in(["img-0000", "img-0001"])
    images.frame = images.frame.with_columns(
        pl.when(relabelled).then((pl.col("digit") + 1) % 10).otherwise(pl.col("digit"))
    )
    result = tick(defs, SENSOR, instance)
    (by_image,) = [r for r in requests(result) if r.partition_key != by_digit.partition_key]
    assert sorted(store.batch_ids(by_image.partition_key)["image_id"]) == ["img-0000", "img-0001"]
    # Both batches are open: the next tick re-sends them and batches nothing new.
    again = tick(defs, SENSOR, instance)
    assert sorted(r.run_key for r in requests(again)) == sorted(
        [by_digit.run_key, by_image.run_key]
    )
    assert not again.dynamic_partitions_requests
    resent = {r.partition_key: selection(r) for r in requests(again)}
    assert resent[by_digit.partition_key] == selection(by_digit) == ["class_summary"]
    for request in (by_digit, by_image):
        assert execute(defs, request, instance).success
    settle(defs, instance)
    assert all(store.resolve_update(k).is_empty for k in store.graph.keys if k.path != "image")
