"""migrations.accept / delete and explain.plan / why through the Python API, on every store."""

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import _migrations
from metaxy_core.testing import compute_increment
from tests.cli.features import LABEL, LINEAGE, fill_lineage
from tests.core import video


@pytest.fixture(params=["memory", "duckdb", "delta"])
def make_store(request, tmp_path):
    def make(graph: mx.FeatureGraph) -> mx.MetadataStore:
        if request.param == "memory":
            return mx.MemoryStore(graph)
        if request.param == "duckdb":
            return mx.DuckDBStore(tmp_path / "m.duckdb", graph)
        return mx.DeltaStore(tmp_path / "lake", graph)

    return make


def filled_video(make_store) -> mx.MetadataStore:
    store = make_store(video.graph())
    compute_increment(store, "video", video.VALUES["video"], samples=video.inputs(4))
    for key in ("crop", "face_detection", "transcript"):
        compute_increment(store, key, video.VALUES[key])
    return store


@pytest.fixture(params=[True, False], ids=["protected", "protection-off"])
def keep_data_versions(request, monkeypatch):
    monkeypatch.setattr(_migrations, "KEEP_DATA_VERSIONS", request.param)
    return request.param


def test_accept_restamps_provenance_and_keeps_data_versions(make_store, keep_data_versions):
    store = filled_video(make_store)
    before = store.read("crop")
    store.graph = video.bump(store.graph, "crop", "frames", "2")
    report = mx.migrations.accept(store, "crop", reason="refactor", actor="ci")
    assert report.samples.height == 4 and report.rows == 4
    after = store.read("crop")
    assert after["crop_path"].to_list() == before["crop_path"].to_list()
    assert store.resolve_update("crop").is_empty
    if keep_data_versions:
        assert after.select("^metaxy_data_version.*$").equals(
            before.select("^metaxy_data_version.*$")
        )
        assert store.resolve_update("face_detection").is_empty
    else:  # the loss the protection prevents: every downstream sample would be recomputed
        assert store.resolve_update("face_detection").counts()["stale"] == 4
    assert store.resolve_update("transcript").is_empty
    audit = store.audit_log().row(-1, named=True)
    assert (audit["actor"], audit["rows"], audit["audit_id"]) == ("ci", 4, report.audit_id)


def test_accept_covers_expansion_and_aggregation(make_store):
    store = make_store(LINEAGE)
    fill_lineage(store)
    store.graph = store.graph.replace(
        LINEAGE.spec("patch").with_field_code_version("pixels", "2"),
        LINEAGE.spec("label_summary").with_field_code_version("pixels", "2"),
    )
    patches = mx.migrations.accept(store, "patch", reason="refactor", filters="patch = 0")
    assert (patches.samples.height, patches.rows) == (6, 24)  # every child of each parent
    summary = mx.migrations.accept(store, "label_summary", reason="refactor")
    assert summary.samples.height == 3
    assert store.resolve_update("patch").is_empty and store.resolve_update("label_summary").is_empty
    assert store.read("patch").height == 24


def test_accept_a_root_needs_its_inputs(make_store):
    store = filled_video(make_store)
    store.graph = video.bump(store.graph, "video", "audio", "2")
    with pytest.raises(mx.SpecError, match="root feature"):
        mx.migrations.accept(store, "video", reason="x")
    report = mx.migrations.accept(store, "video", reason="x", samples=video.inputs(4))
    assert report.samples.height == 4
    assert all(store.resolve_update(k).is_empty for k in ("crop", "transcript"))


def test_delete_cascades_through_expansion_and_aggregation(make_store):
    store = make_store(LINEAGE)
    fill_lineage(store)
    dry = mx.migrations.delete(
        store, "image", filters="image_id = 'img1'", cascade=True, dry_run=True
    )
    assert dry.deleted == {"image": 1, "label_summary": 1, "patch": 4}
    hard = mx.migrations.delete(
        store, "image", filters="image_id = 'img1'", cascade=True, hard=True, reason="gdpr"
    )
    assert hard.deleted == dry.deleted
    assert store.history("patch").filter(pl.col("image_id") == "img1").is_empty()
    assert store.read("label_summary")["label"].to_list() == [0, 2]
    # The group of img1 (label 1) is computed again from its remaining member, img4.
    assert store.resolve_update("label_summary").counts() == {"new": 1, "stale": 0, "orphaned": 0}
    assert store.audit_log()["kind"].to_list() == ["hard delete"]


def test_plan_and_why_follow_lineage(make_store):
    store = make_store(LINEAGE)
    fill_lineage(store)
    store.graph = store.graph.replace(LINEAGE.spec("image").with_field_code_version("pixels", "2"))
    steps = {s.feature.path: s for s in mx.explain.plan(store).steps}
    assert steps["image"].stale == 6
    assert steps["patch"].projected_stale == 6  # parents; their 24 children follow
    assert steps["label_summary"].projected_stale == 3
    inputs = pl.DataFrame(
        {"image_id": [f"img{i}" for i in range(6)], "pixels": [f"p{i}" for i in range(6)]}
    )
    rows = store.resolve_update("image", samples=inputs).to_compute().with_columns(label=LABEL)
    store.write("image", rows, materialization_id="run-2")
    [explained] = mx.explain.why(store, "label_summary", [1])
    assert explained.state == "stale"
    cause = explained.fields[0].causes[0]
    assert (cause.feature.path, cause.kind) == ("image", "data")
    assert cause.detail.startswith("2 member row(s) changed, e.g. [image_id=img1]")
    assert cause.causes[0].detail == "code version 1 -> 2"
