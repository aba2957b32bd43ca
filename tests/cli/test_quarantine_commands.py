"""metaxy quarantine list|release on a DuckDB file holding quarantine records."""

import json

import polars as pl

from metaxy_core import columns as C
from tests.cli.conftest import Project


def quarantine(project: Project, ids: list[str]) -> None:
    with project.open() as store:
        rows = store.read("crop").filter(pl.col("sample_id").is_in(ids))
        samples = rows.select("sample_id", C.PROVENANCE)
        for _ in range(2):
            store.record_attempts("crop", samples, status="failed", reason="OOM in decoder")
        store.record_attempts("crop", samples, status="quarantined")


def test_list_then_release_one_then_all(duckdb_project: Project):
    assert duckdb_project.call("quarantine", "list").out.strip() == "No sample is quarantined."
    quarantine(duckdb_project, ["s0001", "s0002", "s0003"])
    listed = duckdb_project.run("quarantine", "list", "crop")
    assert listed.code == 0, listed.err
    assert listed.out.splitlines()[:2] == [
        "crop: 3 quarantined sample(s)",
        "  {'sample_id': 's0001'}  attempts=2  OOM in decoder",
    ]
    one = duckdb_project.call("quarantine", "release", "crop", "--id", "s0001", "--json")
    assert json.loads(one.out) == {"feature": "crop", "released": 1}
    by_json = duckdb_project.call("quarantine", "release", "crop", "--id", '{"sample_id": "s0002"}')
    assert by_json.out.strip() == "crop: released 1 sample(s) from quarantine."
    left = json.loads(duckdb_project.call("quarantine", "list", "--json").out)["quarantined"]
    assert [r["sample"] for r in left["crop"]] == [{"sample_id": "s0003"}]
    assert duckdb_project.call("quarantine", "release", "crop", "--all").code == 0
    with duckdb_project.open() as store:
        assert store.quarantined("crop").is_empty()


def test_release_needs_ids_or_all(duckdb_project: Project):
    bare = duckdb_project.call("quarantine", "release", "crop")
    assert bare.code == 2 and "--id" in bare.error_line and "--all" in bare.error_line
    both = duckdb_project.call("quarantine", "release", "crop", "--all", "--id", "s1")
    assert both.code == 2
    wrong = duckdb_project.call("quarantine", "release", "crop", "--id", '{"video": 1}')
    assert wrong.code == 2 and "['sample_id']" in wrong.error_line
