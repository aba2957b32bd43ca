"""Configuration (file, METAXY_* variables, flags) and graph discovery (targets, entry points)."""

import json
from pathlib import Path

import pytest

import metaxy_core as mx
from metaxy_core.cli import ConfigError, graph_from_entry_points, load_config
from tests.cli.conftest import run_parallel
from tests.cli.packages import make_package

PYPROJECT = """
[project]
name = "pipeline"

[tool.metaxy]
graph = "tests.cli.features:VIDEO"
store = "dev"

[tool.metaxy.stores.dev]
uri = "duckdb://data/dev.duckdb"

[tool.metaxy.stores.prod]
uri = "s3://bucket/metaxy"
options = { AWS_REGION = "eu-west-1" }

[tool.metaxy.stores.preview]
uri = "duckdb:///tmp/preview.duckdb"
fallback = "prod"
"""


def test_pyproject_is_found_from_a_subdirectory_and_paths_are_relative_to_it(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    sub = tmp_path / "src" / "deep"
    sub.mkdir(parents=True)
    config = load_config(cwd=sub, environ={})
    assert config.source == tmp_path / "pyproject.toml"
    assert config.graph == "tests.cli.features:VIDEO"
    dev = config.store_config()
    assert (dev.name, dev.kind, dev.location) == (
        "dev",
        "duckdb",
        str(tmp_path / "data/dev.duckdb"),
    )
    prod = config.store_config("prod")
    assert (prod.kind, prod.location, prod.options) == (
        "delta",
        "s3://bucket/metaxy",
        {"AWS_REGION": "eu-west-1"},
    )
    preview = config.store_config("preview")
    assert (preview.location, preview.fallback) == ("/tmp/preview.duckdb", "prod")
    assert [k.path for k in config.load_graph().keys] == [
        "video",
        "crop",
        "face_detection",
        "transcript",
    ]


def test_metaxy_toml_wins_over_pyproject_in_the_same_directory(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "metaxy.toml").write_text('graph = "tests.cli.features:LINEAGE"\n')
    config = load_config(cwd=tmp_path, environ={})
    assert (config.source.name, config.graph) == ("metaxy.toml", "tests.cli.features:LINEAGE")


def test_environment_overrides_the_file_and_arguments_override_both(tmp_path):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    env = {
        "METAXY_GRAPH": "tests.cli.features:LINEAGE",
        "METAXY_STORE": "prod",
        "METAXY_STORES__PROD__URI": "gs://other/metaxy",
        "METAXY_STORES__SCRATCH__URI": "memory://",
    }
    config = load_config(cwd=tmp_path, environ=env)
    assert config.graph == "tests.cli.features:LINEAGE"
    assert config.store_config().location == "gs://other/metaxy"
    assert config.store_config().options == {"AWS_REGION": "eu-west-1"}  # kept
    assert config.store_config("scratch").kind == "memory"
    assert config.store_config("postgresql://u@db/meta").kind == "sql"
    flags = load_config(cwd=tmp_path, environ=env, graph="tests.cli.features:VIDEO", store="dev")
    assert (flags.graph, flags.store_config().name) == ("tests.cli.features:VIDEO", "dev")
    other = tmp_path / "elsewhere.toml"
    other.write_text('graph = "x:y"\n[stores.s]\nuri = "delta://d"\n')
    explicit = load_config(cwd=tmp_path, environ={"METAXY_CONFIG": str(other)})
    assert (explicit.graph, explicit.store_config().location) == ("x:y", str(tmp_path / "d"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[stores.a]\nuri = "ftp://x"\n', "unsupported URI 'ftp://x'"),
        ("[stores.a]\noptions = {}\n", "store 'a' needs a uri"),
        ('[stores.a]\nuri = "memory://"\ncolour = 1\n', "unknown key(s) ['colour']"),
        ('[stores.a]\nuri = "memory://"\nfallback = "b"\n', "falls back to unknown store 'b'"),
    ],
)
def test_configuration_mistakes_are_named(tmp_path, text, message):
    (tmp_path / "metaxy.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        config = load_config(cwd=tmp_path, environ={})
        config.open_store("a", graph=mx.FeatureGraph([]))
    assert message in str(caught.value)


def test_graph_targets(tmp_path):
    from metaxy_core.cli import graph_from_target

    assert [k.path for k in graph_from_target("tests.cli.features:lineage_graph").keys] == [
        "image",
        "label_summary",
        "patch",
    ]
    module = graph_from_target("tests.core.video")  # every Feature class of the module
    assert len(module) == 4
    with pytest.raises(ConfigError, match="malformed"):
        graph_from_target("tests.cli.features:")


# -- entry points ------------------------------------------------------------------------------


VIDEO_CODE = """
import metaxy_core as mx
class Video(mx.Feature, spec=mx.FeatureSpec("video", id_columns=["sample_id"], fields=["frames"])):
    path: str
graph = mx.FeatureGraph([Video])
"""
CROP_CODE = """
import metaxy_core as mx
from team_a.features import Video
class Crop(mx.Feature, spec=mx.FeatureSpec("crop", id_columns=["sample_id"], deps=[Video])):
    crop_path: str
FEATURES = [Video, Crop]   # team B reads team A's video: the same definition, merged once
"""
OTHER_VIDEO = """
import metaxy_core as mx
graph = mx.FeatureGraph([mx.FeatureSpec("video", id_columns=["clip_id"])])
"""


def test_entry_points_of_two_packages_merge_into_one_graph(tmp_path):
    merged, clashing = tmp_path / "merged", tmp_path / "clashing"
    make_package(merged, "team-a", VIDEO_CODE, "team_a.features:graph")
    make_package(merged, "team-b", CROP_CODE, "team_b.features:FEATURES")
    make_package(clashing, "team-a", VIDEO_CODE, "team_a.features:graph")
    make_package(clashing, "team-c", OTHER_VIDEO, "team_c.features:graph")
    root = Path(__file__).resolve().parents[2]
    project = tmp_path / "project"
    project.mkdir()
    result, clash = run_parallel(
        [["graph", "--json"], ["graph"]],
        cwd=project,
        envs=[{"PYTHONPATH": f"{site}:{root}"} for site in (merged, clashing)],
    )
    assert result.code == 0, result.err
    assert [f["key"] for f in json.loads(result.out)["features"]] == ["video", "crop"]
    assert clash.code == 2
    assert clash.error_line == (
        "metaxy: error: Feature key video is defined by two packages: team-a "
        "(team_a.features:graph) and team-c (team_c.features:graph), differently. Rename one "
        "of them, or import the other package's feature instead of redefining it."
    )


def test_entry_point_graph_in_process(tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_package(site, "team-a", VIDEO_CODE, "team_a.features:graph")
    monkeypatch.syspath_prepend(str(site))
    assert [k.path for k in graph_from_entry_points().keys] == ["video"]
    with pytest.raises(ConfigError, match="no installed package registers"):
        graph_from_entry_points("metaxy.no_such_group")
