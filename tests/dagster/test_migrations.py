"""The accept job runs in Dagster with config; build_definitions takes a discovered graph."""

import dagster as dg

import metaxy_core as mx
import metaxy_dagster as mxd
from metaxy_core.cli import graph_from_entry_points
from metaxy_core.testing import compute_increment
from tests.cli.packages import make_package
from tests.core import video
from tests.dagster.pipeline import COMPUTES, Source


def test_accept_job_restamps_with_config_and_audits_the_run(instance, store, graph):
    compute_increment(store, "video", video.VALUES["video"], samples=video.inputs(5))
    for key in ("crop", "face_detection", "transcript"):
        compute_increment(store, key, video.VALUES[key])
    bumped = video.bump(graph, "crop", "frames", "2")
    store.graph = bumped
    defs = dg.Definitions(
        jobs=[mxd.accept_job()],
        resources={"metaxy_store": mxd.MetaxyStore(graph=bumped, store=store)},
    )
    config = {"feature": "crop", "reason": "refactor", "fields": ["frames"]}
    result = defs.resolve_job_def("metaxy_accept_job").execute_in_process(
        run_config={"ops": {"metaxy_accept": {"config": config}}}, instance=instance
    )
    assert result.success
    report = result.output_for_node("metaxy_accept")
    assert (report["accepted"], report["skipped"]) == (5, 0)
    assert store.resolve_update("crop").is_empty
    assert store.resolve_update("face_detection").is_empty
    audit = store.audit_log().row(0, named=True)
    assert audit["actor"] == f"dagster run {result.run_id}"
    assert audit["reason"] == "refactor"


def test_build_definitions_takes_the_graph_discovered_from_entry_points(tmp_path, monkeypatch):
    code = "from tests.core.video import graph\n"
    make_package(tmp_path, "team-video", code, "team_video.features:graph")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = graph_from_entry_points()
    defs = mxd.build_definitions(
        graph,
        COMPUTES,
        {"video": Source(video.inputs(3))},
        store=mxd.MetaxyStore(graph=graph, store=mx.MemoryStore(graph)),
    )
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"video", "crop", "face_detection", "transcript"} <= keys
