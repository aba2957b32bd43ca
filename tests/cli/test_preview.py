"""Preview environments: a local DuckDB file layered over a production Delta directory."""

import json

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core.testing import compute_increment
from tests.cli.conftest import Project, fill_video, run_metaxy
from tests.core import video


@pytest.fixture
def prod(tmp_path) -> mx.DeltaStore:
    store = mx.DeltaStore(tmp_path / "prod", video.graph())
    fill_video(store)
    return store


def counts(store: mx.MetadataStore) -> dict[str, int]:
    return {k.path: store.history(k).height for k in store.graph.keys}


def test_reads_fall_through_writes_stay_local_increments_see_both(prod, tmp_path):
    before = counts(prod)
    graph = video.bump(video.graph(), "crop", "frames", "2")
    local = mx.DuckDBStore(tmp_path / "preview.duckdb", graph)
    with mx.PreviewStore(local, prod) as preview:
        assert preview.read("video").height == 6  # nothing local yet: the fallback's rows
        assert preview.resolve_update("crop").stale_fields() == {"frames": {"code": 6}}
        compute_increment(preview, "crop", video.VALUES["crop"])
        assert preview.resolve_update("crop").is_empty
        assert preview.resolve_update("face_detection").counts()["stale"] == 6
        assert preview.resolve_update("transcript").is_empty  # reads video only: untouched
        compute_increment(preview, "face_detection", video.VALUES["face_detection"])
        assert all(preview.resolve_update(k).is_empty for k in ("crop", "face_detection"))
        assert [k.path for k in graph.keys if local.has_feature(k)] == ["crop", "face_detection"]
        assert local.read("crop").height == 6 and not local.has_feature("video")
    assert counts(prod) == before  # the fallback was never written
    assert mx.DeltaStore(prod.uri, graph).resolve_update("crop").counts()["stale"] == 6


def test_soft_deletes_hide_fallback_rows_and_hard_deletes_are_refused(prod, tmp_path):
    before = counts(prod)
    with mx.PreviewStore(mx.DuckDBStore(tmp_path / "p.duckdb", video.graph()), prod) as preview:
        assert preview.delete("transcript", pl.DataFrame({"sample_id": ["s0001"]})) == 1
        assert preview.read("transcript").height == 5
        assert preview.resolve_update("transcript").counts()["new"] == 1
        with pytest.raises(mx.StoreError, match="Soft-delete instead"):
            preview.delete("transcript", pl.DataFrame({"sample_id": ["s0002"]}), hard=True)
        assert preview.read("transcript").height == 5
    assert counts(prod) == before


def test_a_new_local_store_adopts_the_fallback_hash_settings(tmp_path):
    graph = video.graph()
    prod = mx.DeltaStore(tmp_path / "prod", graph, hash_settings=mx.HashSettings("md5"))
    fill_video(prod)
    with mx.PreviewStore(mx.MemoryStore(graph), prod) as preview:
        assert preview.hash_settings == mx.HashSettings("md5")
        assert preview.resolve_update("crop").is_empty
    local = mx.MemoryStore(graph)
    compute_increment(local, "video", video.VALUES["video"], samples=video.inputs(1))
    with pytest.raises(mx.HashSettingsMismatchError, match="fallback with md5"):
        mx.PreviewStore(local, prod)


PREVIEW_CONFIG = """
graph = "tests.cli.features:VIDEO"
store = "preview"

[stores.prod]
uri = "delta://prod"

[stores.preview]
uri = "duckdb://preview.duckdb"
fallback = "prod"
"""


def test_preview_store_from_the_configuration(prod, tmp_path):
    (tmp_path / "metaxy.toml").write_text(PREVIEW_CONFIG)
    before = counts(prod)
    bumped = ("--graph", "tests.cli.features:VIDEO_CROP_V2")
    fresh = run_metaxy(*bumped, "status", "--json", cwd=tmp_path)
    assert fresh.code == 0, fresh.err
    assert not (tmp_path / "preview.duckdb").exists()  # reading created nothing
    by_key = {f["feature"]: f for f in json.loads(fresh.out)["features"]}
    assert by_key["crop"]["stale"] == 6
    project = Project(tmp_path, "duckdb", pytest.MonkeyPatch())
    try:
        accepted = project.call(*bumped, "accept", "crop", "--reason", "preview", "--json")
        assert json.loads(accepted.out)["accepted"] == 6
        assert project.call(*bumped, "plan", "--check").code == 0
        prod_view = project.call(*bumped, "status", "--store", "prod", "--json")
        crop = next(f for f in json.loads(prod_view.out)["features"] if f["feature"] == "crop")
        assert crop["stale"] == 6  # production still needs the work
    finally:
        project.monkeypatch.undo()
    assert counts(prod) == before
