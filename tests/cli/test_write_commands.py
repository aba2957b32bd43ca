"""accept, delete, compact and copy: the console script changing real stores."""

import json

import polars as pl

import metaxy_core as mx
from tests.cli.conftest import Project, run_metaxy, write_config
from tests.cli.features import VIDEO_CROP_V2

CROP_V2 = ("--graph", "tests.cli.features:VIDEO_CROP_V2")


def test_accept_after_a_refactor_leaves_nothing_to_do_downstream(project: Project):
    before = project.snapshot()
    dry = project.call(*CROP_V2, "accept", "crop", "--reason", "refactor", "--dry-run", "--json")
    assert json.loads(dry.out)["accepted"] == 6 and project.snapshot() == before
    done = project.run(
        *CROP_V2, "accept", "crop", "--field", "frames", "--reason", "same crops", "--json"
    )
    assert done.code == 0, done.err
    report = json.loads(done.out)
    assert report | {"audit_id": None} == report | {
        "accepted": 6,
        "rows": 6,
        "skipped": 0,
        "fields": ["frames"],
        "dry_run": False,
        "audit_id": None,
    }
    assert report["audit_id"].startswith("accept-")
    assert project.call(*CROP_V2, "plan", "--check").code == 0  # downstream: nothing to do
    with project.open(VIDEO_CROP_V2) as store:
        rows = store.read("crop")
        assert set(rows["crop_path"]) == {"c.mp4"}  # user columns unchanged
        assert set(rows[mx.columns.MATERIALIZATION_ID]) == {report["audit_id"]}
        audit = store.audit_log().row(0, named=True)
    assert (audit["kind"], audit["feature"], audit["rows"]) == ("accept", "crop", 6)
    assert audit["reason"] == "same crops"
    assert audit["project_version"] == VIDEO_CROP_V2.project_version
    text = project.call("history").out
    assert f"same crops   {VIDEO_CROP_V2.project_version}   {report['audit_id']}" in text
    history = json.loads(project.call("history", "--json").out)["audit"]
    assert [(a["kind"], a["reason"], a["audit_id"]) for a in history] == [
        ("accept", "same crops", report["audit_id"])
    ]


def test_accept_with_where_and_fields_guard(duckdb_project: Project):
    skipped = duckdb_project.call(*CROP_V2, "accept", "crop", "--field", "audio", "-r", "x")
    assert skipped.code == 0
    assert skipped.out.strip() == (
        "crop: accepted 0 sample(s); 6 skipped (stale in fields not accepted: recompute them)"
    )
    chosen = duckdb_project.call(
        *CROP_V2, "accept", "crop", "--where", "sample_id IN ('s0001', 's0002')", "-r", "x"
    )
    assert chosen.out.startswith("crop: accepted 2 sample(s)")
    status = json.loads(duckdb_project.call(*CROP_V2, "status", "crop", "--json").out)
    assert status["features"][0]["stale"] == 4


def test_delete_soft_cascade_dry_run_and_audit(project: Project):
    where = "sample_id IN ('s0001', 's0004')"
    before = project.snapshot()
    dry = project.call("delete", "video", "--where", where, "--cascade", "--dry-run", "--json")
    assert json.loads(dry.out)["deleted"] == {
        "video": 2,
        "crop": 2,
        "face_detection": 2,
        "transcript": 2,
    }
    assert project.snapshot() == before
    done = project.run_on_duckdb("delete", "crop", "--where", where, "--cascade", "-r", "bad")
    assert done.code == 0, done.err
    assert done.out.splitlines()[:2] == [
        "crop: deleted 2 sample(s) (soft)",
        "face_detection: deleted 2 sample(s) (soft)",
    ]
    status = {f["feature"]: f for f in json.loads(project.call("status", "--json").out)["features"]}
    assert [status[k]["live"] for k in ("video", "crop", "face_detection", "transcript")] == [
        6,
        4,
        4,
        6,
    ]
    assert status["crop"]["new"] == 2  # soft-deleted: a run would compute them again
    audit = json.loads(project.call("history", "--json").out)["audit"]
    assert audit[0]["details"]["deleted"] == {"crop": 2, "face_detection": 2}


def test_hard_delete_needs_a_filter_or_yes(duckdb_project: Project):
    before = duckdb_project.snapshot()
    refused = duckdb_project.call("delete", "transcript", "--hard")
    assert refused.code == 2
    assert "add --yes to confirm" in refused.error_line
    assert duckdb_project.snapshot() == before
    done = duckdb_project.call("delete", "transcript", "--hard", "--yes", "--json")
    assert json.loads(done.out)["deleted"] == {"transcript": 6}
    assert duckdb_project.snapshot()["transcript"] == 0  # history included


def test_compact_delta_and_copy_between_stores(project: Project, tmp_path):
    other = tmp_path / "copy"
    other.mkdir()
    target = "delta://" + str(other / "lake") if project.kind == "duckdb" else "duckdb://x.duckdb"
    copied = project.run_on_duckdb(
        "copy", "--from", "main", "--to", target, "--feature", "crop", "--json"
    )
    assert copied.code == 0, copied.err
    assert json.loads(copied.out) == {"copied": {"crop": 6}}
    again = project.call("copy", "--from", "main", "--to", target, "-w", "sample_id = 's0001'")
    assert again.out.splitlines() == [  # a repeated copy adds nothing
        "video: 1 row(s) copied",
        "crop: 0 row(s) copied",
        "face_detection: 1 row(s) copied",
        "transcript: 1 row(s) copied",
    ]
    if project.kind == "delta":
        with project.open() as store:
            store.write("transcript", store.read("transcript").with_columns(text=pl.lit("new")))
        compacted = project.run("compact", "transcript", "--json")
        assert json.loads(compacted.out) == {"compacted": {"transcript": 6}}
        with project.open() as store:
            assert store.history("transcript").height == 12  # archived, still readable
    else:
        note = project.call("compact")
        assert note.out.startswith("DuckDBStore keeps its current rows apart from its log")


def test_copy_to_a_new_store_adopts_the_source_hash_settings(tmp_path):
    write_config(tmp_path, "duckdb://md5.duckdb")
    graph = mx.FeatureGraph([mx.FeatureSpec("a", id_columns=["id"], fields=["x"])])
    with mx.DuckDBStore(tmp_path / "md5.duckdb", graph, hash_settings=mx.HashSettings("md5")) as s:
        s.write("a", s.resolve_update("a", samples=pl.DataFrame({"id": ["1"], "x": ["h"]})).new)
    target = tmp_path / "out.duckdb"
    env = {"METAXY_GRAPH": "tests.cli.features:SMALL"}
    done = run_metaxy("copy", "--from", "main", "--to", f"duckdb://{target}", cwd=tmp_path, env=env)
    assert done.code == 0, done.err
    with mx.DuckDBStore(target, graph) as copied:
        assert copied.hash_settings == mx.HashSettings("md5")
        assert copied.resolve_update("a", samples=pl.DataFrame({"id": ["1"], "x": ["h"]})).is_empty
