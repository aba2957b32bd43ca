"""graph, status, plan, why, history and diff: the console script on DuckDB and Delta."""

import json

import polars as pl

from tests.cli.conftest import Project
from tests.cli.features import VIDEO_FRAMES_V2
from tests.core import video

CROP_V2 = ("--graph", "tests.cli.features:VIDEO_CROP_V2")
FRAMES_V2 = ("--graph", "tests.cli.features:VIDEO_FRAMES_V2")


def test_graph_formats(duckdb_project: Project):
    fields = duckdb_project.run("graph", "--fields", "--stats")
    assert fields.code == 0, fields.err
    tree = duckdb_project.call("graph")
    lines = tree.out.splitlines()
    assert lines[1] == "└── video (audio, frames)"
    assert "    │   └── face_detection (faces)" in lines
    assert "faces v1 <- crop.frames" in fields.out
    assert "text v1 <- video.audio" in fields.out  # transcript reads only the audio
    assert "crop  6 live, 0 pending, last write" in fields.out
    mermaid = duckdb_project.call("graph", "-f", "mermaid", "--fields")
    assert mermaid.out.startswith("graph LR")
    assert "  crop__f__frames --> face_detection__f__faces" in mermaid.out
    assert "video__f__audio --> face_detection" not in mermaid.out
    dot = duckdb_project.call("graph", "--format", "dot")
    assert dot.out.startswith("digraph metaxy {") and "  video -> transcript;" in dot.out
    data = json.loads(duckdb_project.call("graph", "--json", "--stats").out)
    crop = next(f for f in data["features"] if f["key"] == "crop")
    assert crop["fields"][1] == {"key": "frames", "code_version": "1", "parents": ["video.frames"]}
    assert crop["stats"]["live"] == 6 and crop["stats"]["pending"] == 0


def test_status_counts_stale_fields_with_their_cause_and_check_exits_1(project: Project):
    bumped = project.run(*CROP_V2, "status", "--json")
    assert bumped.code == 0, bumped.err
    by_key = {f["feature"]: f for f in json.loads(bumped.out)["features"]}
    assert by_key["crop"]["stale"] == 6
    assert by_key["crop"]["stale_fields"] == {"frames": {"code": 6}}
    assert by_key["face_detection"]["stale"] == 0  # nothing until crop is recomputed
    assert by_key["video"]["state"] == "inputs not checked"
    assert project.call("status", "--check").code == 0
    text = project.call(*CROP_V2, "status", "crop", "transcript", "--check")
    assert text.code == 1
    assert "frames: 6 code" in text.out
    assert "face_detection" not in text.out
    assert project.call(*CROP_V2, "status", "transcript", "--check").code == 0


def test_plan_projects_downstream_impact(project: Project):
    result = project.run_on_duckdb(*FRAMES_V2, "plan", "--json", "--check")
    assert result.code == 1, result.err
    steps = {s["feature"]: s for s in json.loads(result.out)["steps"]}
    assert steps["video"]["stale"] == 6  # a code bump on a root: seen without its inputs
    assert steps["crop"] == steps["crop"] | {"stale": 0, "projected_stale": 6, "to_compute": 6}
    assert steps["crop"]["fields"] == {"frames": 6}
    assert steps["face_detection"]["projected_stale"] == 6
    assert steps["transcript"]["to_compute"] == 0  # reads only the audio
    text = project.call(*FRAMES_V2, "plan")
    assert "18 sample(s) to compute, 12 of them once their upstream is recomputed." in text.out
    assert project.call("plan", "--check").code == 0


def test_why_explains_a_code_bump_two_levels_up(project: Project):
    """video.frames 1 -> 2, video and crop recomputed: face_detection stale, causes named."""
    with project.open(VIDEO_FRAMES_V2) as store:
        rows = store.resolve_update("video", samples=video.inputs(6)).to_compute()
        store.write("video", rows.with_columns(path=pl.lit("v.mp4")), materialization_id="run-7")
        rows = store.resolve_update("crop").to_compute()
        store.write(
            "crop", rows.with_columns(crop_path=pl.lit("c.mp4")), materialization_id="run-8"
        )
    result = project.run_on_duckdb(*FRAMES_V2, "why", "face_detection", "s0001", "s0002")
    assert result.code == 0, result.err
    first = result.out.split("\n\n")[0].splitlines()
    assert first[0] == "face_detection [sample_id=s0001]: stale"
    assert first[1] == "  faces: stale (upstream)"
    assert first[2].startswith("    <- crop.frames: data version ")
    assert first[2].endswith(" by run-8")
    assert first[3].startswith("      <- video.frames: data version ")
    assert first[3].endswith(" by run-7")
    assert first[4] == "        <- video.frames: code version 1 -> 2"
    data = json.loads(project.call(*FRAMES_V2, "why", "face_detection", "s0003", "--json").out)
    chain = data[0]["fields"][0]["causes"][0]
    assert (chain["feature"], chain["kind"]) == ("crop", "data")
    assert chain["causes"][0]["causes"][0] == {
        "feature": "video",
        "field": "frames",
        "kind": "code",
        "detail": "code version 1 -> 2",
        "causes": [],
    }


def test_why_names_pending_upstreams_and_unknown_samples(duckdb_project: Project):
    result = duckdb_project.call(*FRAMES_V2, "why", "face_detection", "s0001", "nope", "--json")
    assert result.code == 0, result.err
    known, unknown = json.loads(result.out)
    assert known["state"] == "up to date"
    pending = known["pending"][0]
    assert (pending["feature"], pending["field"]) == ("crop", "frames")
    assert pending["causes"][0]["detail"] == "stale itself (code)"
    assert unknown["state"].startswith("unknown")


def test_history_and_diff_over_pushed_snapshots(duckdb_project: Project):
    pushed = duckdb_project.run("push", "--tag", "git=abc123", "--json")
    assert pushed.code == 0, pushed.err
    version = json.loads(pushed.out)["project_version"]
    assert duckdb_project.call(*FRAMES_V2, "push").code == 0
    history, diff = duckdb_project.run_parallel(
        ["history", "--json"], ["diff", version[:8], "latest", "--json", "--check"]
    )
    history = json.loads(history.out)
    assert [s["tags"] for s in history["snapshots"]][-2:] == [{"git": "abc123"}, {}]
    assert history["audit"] == []
    assert diff.code == 1, diff.err
    changes = {(c["feature"], c["kind"]): c["detail"] for c in json.loads(diff.out)["changes"]}
    assert changes[("video", "code version bumped")] == "'frames' 1 -> 2"
    # Changes that reach a feature only through an upstream are named too.
    assert ("crop", "version moved upstream") in changes
    assert ("face_detection", "version moved upstream") in changes
    assert not any(f == "transcript" for f, _ in changes)
    text = duckdb_project.call("diff", "latest", "current")
    assert "video: code version bumped 'frames' 2 -> 1" in text.out
    assert duckdb_project.call("diff", "current", "--check").code == 0
