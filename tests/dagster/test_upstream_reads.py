"""A compute reads its upstream features through the increment, restricted to its batch."""

import polars as pl

import metaxy_dagster as mxd
from tests.core import video
from tests.dagster.pipeline import COMPUTES, Source
from tests.dagster.sensing import execute, requests, tick


def test_a_batch_run_reads_exactly_its_batch_of_upstream_rows(graph, store, instance):
    seen: list[list[str]] = []

    def compute_video(context, increment):
        return increment.to_compute().with_columns(path=pl.col("sample_id") + ".mp4")

    def compute_crop(context, increment):
        videos = increment.upstream(video.Video, columns=["path"])
        seen.append(sorted(videos["sample_id"]))
        rows = increment.to_compute().drop("path").join(videos, on="sample_id")
        return rows.with_columns(crop_path="crop-" + pl.col("path"))

    computes = {**COMPUTES, "video": compute_video, "crop": compute_crop}
    resource = mxd.MetaxyStore(graph=graph, store=store)
    defs = mxd.build_definitions(
        graph,
        computes,
        {"video": Source(video.inputs(4))},
        store=resource,
        sensor_options={"max_batch_size": 2, "max_batches_per_tick": 1},
    )
    (request,) = requests(tick(defs, "metaxy_increment_sensor", instance))
    assert execute(defs, request, instance).success
    batch = sorted(store.batch_ids(request.partition_key)["sample_id"])
    assert seen == [batch] and len(batch) == 2  # not the four videos written so far
    crops = store.read("crop").sort("sample_id")
    assert crops["crop_path"].to_list() == [f"crop-{s}.mp4" for s in batch]
