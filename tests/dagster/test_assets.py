"""Feature assets materialized for real on a temporary Dagster instance."""

import dagster as dg
import polars as pl
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from tests.core import video
from tests.dagster.pipeline import COMPUTES, Source

ORDER = ["video", "crop", "face_detection", "transcript"]


def run(graph, source, resources, instance, *, computes=COMPUTES):
    assets = mxd.feature_assets(graph, computes, sources={"video": source})
    return dg.materialize(assets, resources=resources, instance=instance)


def materializations(result) -> dict[str, dg.AssetMaterialization]:
    return {
        e.asset_key.to_user_string(): e.materialization
        for e in result.get_asset_materialization_events()
    }


def meta(m: dg.AssetMaterialization, key: str):
    return m.metadata[key].value


def test_first_run_writes_every_sample_with_the_run_id(graph, source, resources, instance, store):
    result = run(graph, source, resources, instance)
    assert result.success
    mats = materializations(result)
    for key in ORDER:
        assert meta(mats[key], "dagster/row_count") == 25
        assert meta(mats[key], "metaxy/new") == 25
        assert meta(mats[key], "metaxy/rows_written") == 25
        assert "dagster/partition_row_count" not in mats[key].metadata  # not partitioned
        assert store.read(key)["metaxy_materialization_id"].unique().to_list() == [result.run_id]
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert len(result.get_asset_check_evaluations()) == 4 * len(ORDER)


def test_second_run_writes_nothing_and_keeps_data_versions(graph, source, resources, instance):
    first = materializations(run(graph, source, resources, instance))
    second = materializations(run(graph, source, resources, instance))
    for key in ORDER:
        assert meta(second[key], "metaxy/rows_written") == 0
        assert second[key].tags["dagster/data_version"] == first[key].tags["dagster/data_version"]


def test_changed_audio_of_two_samples_writes_two_rows_to_audio_readers(
    graph, source, resources, instance
):
    run(graph, source, resources, instance)
    source.frame = video.inputs(25, audio_suffix="-v2", changed=2)
    mats = materializations(run(graph, source, resources, instance))
    written = {key: meta(mats[key], "metaxy/rows_written") for key in ORDER}
    assert written == {"video": 2, "crop": 2, "face_detection": 0, "transcript": 2}


def test_orphaned_samples_get_tombstones(graph, source, resources, instance, store):
    run(graph, source, resources, instance)
    source.frame = video.inputs(25).filter(~pl.col("sample_id").is_in(["s0001", "s0007", "s0020"]))
    result = run(graph, source, resources, instance)
    mats = materializations(result)
    for key in ORDER:
        assert meta(mats[key], "metaxy/orphaned") == 3
        assert meta(mats[key], "metaxy/tombstones") == 3
        assert meta(mats[key], "dagster/row_count") == 22
        deleted = store.read(key, include_deleted=True).filter(
            pl.col("metaxy_deleted_at").is_not_null()
        )
        assert deleted["sample_id"].to_list() == ["s0001", "s0007", "s0020"]
        assert deleted["metaxy_materialization_id"].unique().to_list() == [result.run_id]


def _ordered(descending: bool):
    def compute(context, increment):
        rows = increment.to_compute().with_columns(crop_path=pl.lit("c.mp4"))
        return rows.sort("sample_id", descending=descending)

    return COMPUTES | {"crop": compute}


def test_data_version_does_not_depend_on_row_order(graph, instance):
    versions = []
    for descending in (False, True):
        store = mx.MemoryStore(graph)
        resource = mxd.MetaxyStore(graph=graph, store=store)
        resources = {
            "metaxy_store": resource,
            "metaxy_io_manager": mxd.MetaxyIOManager(store=resource),
        }
        result = run(
            graph, Source(video.inputs(25)), resources, instance, computes=_ordered(descending)
        )
        versions.append(materializations(result)["crop"].tags["dagster/data_version"])
    assert versions[0] == versions[1]


def test_rows_outside_the_increment_are_refused_and_nothing_is_written(
    graph, source, resources, instance, store
):
    run(graph, source, resources, instance)
    source.frame = video.inputs(25, audio_suffix="-v2", changed=2)

    def everything(context, increment):
        return store.read("video").select("sample_id").with_columns(crop_path=pl.lit("x"))

    before = store.history("crop").height
    with pytest.raises(mx.OutOfIncrementError, match="s0002"):
        run(graph, source, resources, instance, computes=COMPUTES | {"crop": everything})
    assert store.history("crop").height == before


def test_root_without_source_is_refused(graph):
    with pytest.raises(mx.MetaxyError, match="video"):
        mxd.feature_assets(graph, COMPUTES)


def test_provenance_check_names_a_tampered_sample(graph, source, resources, instance, store):
    assets = mxd.feature_assets(graph, COMPUTES, sources={"video": source})
    dg.materialize(assets, resources=resources, instance=instance)
    live = store.read("face_detection").filter(pl.col("sample_id") == "s0003")
    kept = ["sample_id", "n_faces", "metaxy_provenance__faces"]
    store.write(
        "face_detection", live.select(kept).with_columns(metaxy_provenance=pl.lit("tampered"))
    )
    result = dg.materialize(
        assets, selection=[dg.AssetKey("face_detection")], resources=resources, instance=instance
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["metaxy_provenance"].passed
    assert "s0003" in checks["metaxy_provenance"].description
    assert checks["metaxy_unique_ids"].passed
    assert checks["metaxy_nothing_pending"].passed  # per-field provenance still matches


def test_definition_metadata_describes_columns_lineage_and_fields(graph):
    (crop,) = [
        a
        for a in mxd.feature_assets(graph, COMPUTES, sources={"video": Source(video.inputs(2))})
        if a.key == dg.AssetKey("crop")
    ]
    spec = crop.specs_by_key[dg.AssetKey("crop")]
    assert spec.code_version == mx.feature_code_version(graph, "crop")
    assert {d.asset_key for d in spec.deps} == {dg.AssetKey("video")}
    schema = spec.metadata["dagster/column_schema"]
    names = [c.name for c in schema.columns]
    assert names[:2] == ["sample_id", "crop_path"] and "metaxy_provenance__frames" in names
    lineage = spec.metadata["dagster/column_lineage"].deps_by_column
    assert [(d.asset_key, d.column_name) for d in lineage["sample_id"]] == [
        (dg.AssetKey("video"), "sample_id")
    ]
    assert [d.column_name for d in lineage["metaxy_provenance__frames"]] == [
        "metaxy_data_version__frames"
    ]
    assert all(len(v) <= 63 and "/" not in v for v in spec.tags.values())
    assert {c.name for c in crop.check_specs} == {
        "metaxy_provenance",
        "metaxy_unique_ids",
        "metaxy_nothing_pending",
        "metaxy_quarantine",
    }


def test_long_tag_values_are_made_tag_safe():
    spec = mx.FeatureSpec("a/b", id_columns=["id"], tags={"team": "x/" * 50})
    graph = mx.FeatureGraph([spec])
    (asset,) = mxd.feature_assets(graph, {"a/b": lambda c, i: None}, sources={"a/b": lambda: None})
    tags = asset.specs_by_key[dg.AssetKey(["a", "b"])].tags
    assert len(tags["team"]) == 63 and "/" not in tags["team"]


def test_rows_carrying_stale_provenance_get_the_increments(
    graph, source, resources, instance, store
):
    run(graph, source, resources, instance)

    def from_stored_rows(context, increment: mx.Increment) -> pl.DataFrame:
        # Rows taken from the store keep the provenance of before the change.
        ids = increment.to_compute().select("sample_id")
        return store.read("transcript").join(ids, on="sample_id", how="semi")

    source.frame = video.inputs(25, audio_suffix="-v2", changed=2)
    result = run(
        graph, source, resources, instance, computes={**COMPUTES, "transcript": from_stored_rows}
    )
    assert meta(materializations(result)["transcript"], "metaxy/rows_written") == 2
    assert store.resolve_update("transcript").is_empty
    assert all(e.passed for e in result.get_asset_check_evaluations())
