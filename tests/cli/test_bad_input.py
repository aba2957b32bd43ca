"""Bad input: one line on stderr naming the problem, exit code 2, and the store unchanged."""

import pytest

from tests.cli.conftest import Project, run_metaxy


def test_unknown_feature_malformed_filter_unreachable_store(project: Project):
    before = project.snapshot()
    missing = "duckdb://gone.duckdb" if project.kind == "duckdb" else "delta://gone"
    commands = [
        ["accept", "nope", "--reason", "x"],
        ["status", "--store", missing],
        ["delete", "crop", "--where", "sample_id = ", "--cascade"],
        ["accept", "crop"],
    ]
    # Subprocesses on DuckDB for the first two; the same entry point in this process
    # otherwise (each interpreter start costs ~3 s).
    if project.kind == "duckdb":
        results = [*project.run_parallel(*commands[:2]), *(project.call(*c) for c in commands[2:])]
    else:
        results = [project.call(*c) for c in commands]
    unknown, unreachable, malformed, no_reason = results
    assert unknown.code == 2
    assert unknown.error_line == (
        "metaxy: error: Unknown feature nope; the graph has: video, crop, face_detection, "
        "transcript."
    )
    assert malformed.code == 2
    assert malformed.error_line.startswith("metaxy: error: Filter 'sample_id = '")
    assert unreachable.code == 2
    assert "gone" in unreachable.error_line and "does not exist" in unreachable.error_line
    assert no_reason.code == 2
    assert "Missing option '--reason'" in no_reason.error_line
    assert project.snapshot() == before
    assert not (project.path / "gone.duckdb").exists() and not (project.path / "gone").exists()


def test_missing_configuration(tmp_path):
    result = run_metaxy("status", cwd=tmp_path)
    assert result.code == 2
    assert result.error_line.startswith("metaxy: error: No metaxy configuration found")
    assert result.out == ""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["status", "--bogus"], "No such option: --bogus (see metaxy status --help)"),
        (["frobnicate"], "No such command 'frobnicate'."),
        (["status", "--store", "nowhere"], "Unknown store 'nowhere'; configured stores: main."),
        (["--graph", "no_such_module:graph", "graph"], "no module named 'no_such_module'"),
        (["--graph", "tests.cli.features:Image", "graph"], "it must name a FeatureGraph"),
        (["accept", "video", "-r", "x"], "video: it is a root feature"),
        (["accept", "crop", "--field", "nope", "-r", "x"], "has no field(s) ['nope']"),
        (["why", "crop", "a=1,b"], "malformed id 'a=1,b'"),
        (["diff", "ffff"], "No graph snapshot 'ffff' in the store"),
        (["push", "--tag", "oops"], "malformed tag 'oops'"),
        (["copy", "--from", "main", "--to", "main"], "--from and --to name the same store"),
        (["status", "--store", "ftp://x"], "unsupported URI 'ftp://x'"),
    ],
)
def test_each_mistake_is_named(duckdb_project: Project, args, expected):
    before = duckdb_project.snapshot()
    result = duckdb_project.call(*args)
    assert result.code == 2, result.out
    assert expected in result.error_line
    assert duckdb_project.snapshot() == before


def test_malformed_configuration_files(duckdb_project: Project):
    config = duckdb_project.path / "metaxy.toml"
    config.write_text('graph = "tests.cli.features:VIDEO"\nstores = 3\n')
    assert "'stores' must be a table" in duckdb_project.call("graph").error_line
    config.write_text('graph = "tests.cli.features:VIDEO"\ncolour = "blue"\n')
    assert "unknown key(s) ['colour']" in duckdb_project.call("graph").error_line
    config.write_text("graph = [\n")
    assert "Cannot read configuration file" in duckdb_project.call("graph").error_line


def test_bare_metaxy_prints_the_help(duckdb_project: Project):
    result = duckdb_project.call()
    assert result.code == 0 and result.err == ""
    assert result.out.startswith("Usage: metaxy [OPTIONS] COMMAND [ARGS]...")
    assert "accept" in result.out and "why" in result.out
