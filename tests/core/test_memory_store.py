"""MemoryStore specifics: append-only history, latest rows, deletes, system columns, bad input."""

import datetime as dt

import polars as pl
import pyarrow as pa
import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core.testing import compute_increment
from tests.core.video import VALUES, graph, inputs

SYSTEM_DTYPES = {
    C.PROVENANCE: pl.String,
    C.provenance_column("audio"): pl.String,
    C.provenance_column("frames"): pl.String,
    C.DATA_VERSION: pl.String,
    C.data_version_column("audio"): pl.String,
    C.data_version_column("frames"): pl.String,
    C.code_version_column("audio"): pl.String,
    C.code_version_column("frames"): pl.String,
    C.FEATURE_VERSION: pl.String,
    C.PROJECT_VERSION: pl.String,
    C.CREATED_AT: pl.Datetime("us", "UTC"),
    C.UPDATED_AT: pl.Datetime("us", "UTC"),
    C.DELETED_AT: pl.Datetime("us", "UTC"),
    C.MATERIALIZATION_ID: pl.String,
    C.WRITE_ID: pl.String,
}


def video_store(n: int = 3) -> mx.MemoryStore:
    store = mx.MemoryStore(graph())
    compute_increment(store, "video", VALUES["video"], samples=inputs(n))
    return store


def rewrite_video(store: mx.MemoryStore, ids: list[str], path: str) -> int:
    rows = store.read("video", include_deleted=True).filter(pl.col("sample_id").is_in(ids))
    return store.write(
        "video",
        rows.select(
            "sample_id", C.PROVENANCE, C.provenance_column("audio"), C.provenance_column("frames")
        ).with_columns(path=pl.lit(path)),
    )


# -- columns ------------------------------------------------------------------------------------


def test_every_system_column_is_present_and_typed():
    store = mx.MemoryStore(graph())
    compute_increment(store, "video", VALUES["video"], samples=inputs(2))
    store.write(
        "crop",
        store.resolve_update("crop").new.with_columns(crop_path=pl.lit("c")),
        materialization_id="run-1",
    )
    video = store.read("video")
    assert video.columns == ["sample_id", "path", *SYSTEM_DTYPES]
    assert dict(video.schema) == {"sample_id": pl.String, "path": pl.String, **SYSTEM_DTYPES}
    row = video.row(0, named=True)
    assert row[C.FEATURE_VERSION] == mx.feature_version(store.graph, "video")
    assert row[C.PROJECT_VERSION] == store.graph.project_version
    assert row[C.code_version_column("audio")] == "1"
    assert row[C.DELETED_AT] is None and row[C.MATERIALIZATION_ID] is None
    assert row[C.CREATED_AT] == row[C.UPDATED_AT]
    assert store.read("crop")[C.MATERIALIZATION_ID].to_list() == ["run-1", "run-1"]
    # carried upstream columns (crop sees video's "path") are not stored on crop
    assert "path" not in store.read("crop").columns


def test_read_columns_filters_and_empty_reads():
    store = video_store(3)
    assert store.read("video", columns=["path"]).columns == ["sample_id", "path"]
    assert store.read("video", filters=["sample_id > 's0000'"])["sample_id"].to_list() == [
        "s0001",
        "s0002",
    ]
    empty = store.read("crop")
    assert empty.is_empty() and empty.columns == ["sample_id", "crop_path"]
    assert store.history("crop").is_empty()
    assert store.latest("crop") is None
    assert store.has_feature("video") and not store.has_feature("crop")


# -- history and latest ---------------------------------------------------------------------------


def test_append_only_history_and_latest_row_per_sample():
    store = video_store(3)
    rewrite_video(store, ["s0001"], "second.mp4")
    rewrite_video(store, ["s0001"], "third.mp4")
    history = store.history("video")
    assert history.height == 5
    assert history.filter(pl.col("sample_id") == "s0001")["path"].to_list() == [
        "v.mp4",
        "second.mp4",
        "third.mp4",
    ]
    assert history[C.WRITE_ID].is_sorted()
    latest = store.read("video")
    assert latest["sample_id"].to_list() == ["s0000", "s0001", "s0002"]  # sorted by id
    assert latest["path"].to_list() == ["v.mp4", "third.mp4", "v.mp4"]


def test_latest_is_chosen_by_write_id_not_physical_order():
    store = video_store(3)
    rewrite_video(store, ["s0000", "s0002"], "new.mp4")
    expected = store.read("video")
    table = mx.FeatureKey("video").table_name
    fresh = mx.MemoryStore(store.graph)
    fresh._append(table, store.history("video").reverse())  # newest rows first, physically
    assert fresh.read("video").equals(expected)
    shuffled = mx.MemoryStore(store.graph)
    shuffled._append(table, store.history("video").sample(fraction=1.0, shuffle=True, seed=7))
    assert shuffled.read("video").equals(expected)


def test_write_ids_are_unique_and_increasing_across_writes():
    store = video_store(2)
    for i in range(20):
        rewrite_video(store, ["s0000"], f"{i}.mp4")
    ids = store.history("video")[C.WRITE_ID]
    assert ids.unique().len() == 21  # one id per write
    assert store.read("video")["path"][0] == "19.mp4"


def test_copying_the_same_history_twice_keeps_one_live_row_per_sample():
    store = video_store(3)
    copy = mx.MemoryStore(store.graph)
    assert store.copy_to(copy) == {"video": 3}
    assert store.copy_to(copy) == {"video": 0}
    assert copy.read("video").height == 3
    assert copy.read("video").drop(C.WRITE_ID).equals(store.read("video").drop(C.WRITE_ID))


# -- deletes --------------------------------------------------------------------------------------


def test_soft_delete_appends_markers_and_rewrite_revives():
    store = video_store(3)
    created = store.read("video").filter(pl.col("sample_id") == "s0001")[C.CREATED_AT][0]
    assert store.delete("video", pl.DataFrame({"sample_id": ["s0001", "nope"]})) == 1
    assert store.read("video")["sample_id"].to_list() == ["s0000", "s0002"]
    deleted = store.read("video", include_deleted=True).filter(pl.col("sample_id") == "s0001")
    assert deleted[C.DELETED_AT][0] is not None
    history = store.history("video")
    assert history.height == 4  # the marker is a row; nothing was removed
    assert store.delete("video", pl.DataFrame({"sample_id": ["s0001"]})) == 0  # already deleted
    # The root increment sees the deleted sample as new again.
    assert store.resolve_update("video", samples=inputs(3)).new["sample_id"].to_list() == ["s0001"]
    rewrite_video(store, ["s0001"], "back.mp4")
    revived = store.read("video").filter(pl.col("sample_id") == "s0001")
    assert revived["path"].to_list() == ["back.mp4"]
    assert revived[C.CREATED_AT][0] == created  # created_at survives delete and revive
    assert revived[C.UPDATED_AT][0] > created


def test_soft_deleted_upstream_orphans_downstream():
    store = video_store(3)
    compute_increment(store, "crop", VALUES["crop"])
    store.delete("video", pl.DataFrame({"sample_id": ["s0000"]}))
    assert store.resolve_update("crop").orphaned["sample_id"].to_list() == ["s0000"]


def test_hard_delete_removes_history():
    store = video_store(3)
    rewrite_video(store, ["s0001"], "second.mp4")
    store.delete("video", pl.DataFrame({"sample_id": ["s0002"]}))
    assert store.delete("video", pl.DataFrame({"sample_id": ["s0001", "s0002"]}), hard=True) == 2
    assert store.history("video")["sample_id"].to_list() == ["s0000"]
    assert store.read("video", include_deleted=True)["sample_id"].to_list() == ["s0000"]


def test_deletes_on_unwritten_feature_or_no_ids_do_nothing():
    store = video_store(1)
    assert store.delete("crop", pl.DataFrame({"sample_id": ["s0000"]})) == 0
    assert store.delete("video", pl.DataFrame(schema={"sample_id": pl.String})) == 0
    assert store.history("video").height == 1


# -- accepted input -------------------------------------------------------------------------------


def test_write_accepts_lazy_and_arrow_frames_and_computes_downstream_provenance():
    store = video_store(2)
    lazy = pl.LazyFrame({"sample_id": ["s0000"], "crop_path": ["c0"]})
    assert store.write("crop", lazy) == 1  # provenance computed from the upstream when absent
    arrow = pa.table({"sample_id": ["s0001"], "crop_path": ["c1"]})
    assert store.write("crop", arrow) == 1
    assert store.resolve_update("crop").is_empty


def test_compatible_dtypes_are_cast():
    class Scores(mx.Feature, spec=mx.FeatureSpec("scores", id_columns=["sample_id"])):
        n: int
        score: float
        at: dt.datetime

    store = mx.MemoryStore(mx.FeatureGraph([Scores]))
    rows = store.resolve_update(
        "scores", samples=pl.DataFrame({"sample_id": ["a"], "default": ["x"]})
    ).new
    store.write(
        "scores",
        rows.with_columns(
            pl.lit(3, pl.Int32).alias("n"),
            pl.lit(2, pl.Int16).alias("score"),
            pl.lit(dt.datetime(2024, 1, 1), pl.Datetime("ns")).alias("at"),
        ),
    )
    assert dict(store.read("scores").select("n", "score", "at").schema) == {
        "n": pl.Int64,
        "score": pl.Float64,
        "at": pl.Datetime("us", "UTC"),
    }


def test_writing_an_empty_frame_writes_nothing():
    store = video_store(1)
    empty = store.read("video").clear()
    assert store.write("video", empty) == 0
    assert store.history("video").height == 1


# -- bad input: a clear error and nothing written --------------------------------------------------


def good_crop_rows(store: mx.MemoryStore) -> pl.DataFrame:
    return store.resolve_update("crop").to_compute().with_columns(crop_path=pl.lit("c"))


BAD_WRITES = {
    "missing id column": (
        "crop",
        lambda s: good_crop_rows(s).drop("sample_id"),
        mx.WriteValidationError,
        r"missing id column\(s\) \['sample_id'\]",
    ),
    "null id": (
        "crop",
        lambda s: good_crop_rows(s).with_columns(pl.lit(None, pl.String).alias("sample_id")),
        mx.WriteValidationError,
        "id column 'sample_id' has 1 null",
    ),
    "duplicate ids": (
        "crop",
        lambda s: pl.concat([good_crop_rows(s), good_crop_rows(s).head(1)]),
        mx.WriteValidationError,
        r"2 rows share ids, e.g. \[\{'sample_id': 's0001'\}\]",
    ),
    "wrong dtype": (
        "crop",
        lambda s: good_crop_rows(s).with_columns(crop_path=pl.lit(1)),
        mx.WriteValidationError,
        "column 'crop_path' has dtype Int32, expected String",
    ),
    "wrong id dtype": (
        "crop",
        lambda s: good_crop_rows(s).with_columns(pl.lit(1).alias("sample_id")),
        mx.WriteValidationError,
        "column 'sample_id' has dtype",
    ),
    "unknown column": (
        "crop",
        lambda s: good_crop_rows(s).with_columns(surprise=pl.lit(1)),
        mx.WriteValidationError,
        r"unknown column\(s\) \['surprise'\]; declare them on the feature class Crop",
    ),
    "unknown feature": (
        "nope",
        lambda s: good_crop_rows(s),
        mx.UnknownFeatureError,
        "Unknown feature nope",
    ),
    "root rows without provenance": (
        "video",
        lambda s: pl.DataFrame({"sample_id": ["z"], "path": ["z.mp4"]}),
        mx.WriteValidationError,
        r"root rows need the provenance columns \['metaxy_provenance'",
    ),
    "null provenance": (
        "crop",
        lambda s: good_crop_rows(s).with_columns(pl.lit(None, pl.String).alias(C.PROVENANCE)),
        mx.WriteValidationError,
        r"provenance column\(s\) \['metaxy_provenance'\] hold nulls",
    ),
    "rows without upstream": (
        "crop",
        lambda s: pl.DataFrame({"sample_id": ["s0000", "ghost"], "crop_path": ["c", "c"]}),
        mx.WriteValidationError,
        r"1 row\(s\) have no upstream rows, e.g. \[\{'sample_id': 'ghost'\}\]",
    ),
    "not a frame": (
        "crop",
        lambda s: [1, 2, 3],
        mx.WriteValidationError,
        "expected a dataframe, got list",
    ),
}


@pytest.mark.parametrize("case", list(BAD_WRITES))
def test_bad_writes_raise_and_write_nothing(case):
    feature, build, error, message = BAD_WRITES[case]
    store = video_store(3)
    compute_increment(store, "crop", VALUES["crop"])
    changed = inputs(3).with_columns(
        pl.when(pl.col("sample_id") == "s0001")
        .then(pl.lit("new"))
        .otherwise("audio")
        .alias("audio")
    )
    compute_increment(store, "video", VALUES["video"], samples=changed)
    assert store.resolve_update("crop").counts()["stale"] == 1
    rows = build(store)
    before = {k: store.history(k) for k in ("video", "crop")}
    with pytest.raises(error, match=message) as info:
        store.write(feature, rows)
    assert isinstance(info.value, mx.MetaxyError)
    for key, frame in before.items():
        assert store.history(key).equals(frame), f"{case}: {key} history changed"


def test_write_to_a_feature_whose_upstream_was_never_written():
    store = mx.MemoryStore(graph())
    with pytest.raises(mx.WriteValidationError, match="upstream was never written"):
        store.write("crop", pl.DataFrame({"sample_id": ["a"], "crop_path": ["c"]}))
    assert not store.has_feature("crop")


def test_unknown_feature_on_every_entry_point():
    store = video_store(1)
    for call in (
        lambda: store.read("nope"),
        lambda: store.history("nope"),
        lambda: store.resolve_update("nope"),
        lambda: store.delete("nope", pl.DataFrame({"sample_id": ["a"]})),
    ):
        with pytest.raises(mx.UnknownFeatureError, match="Unknown feature nope"):
            call()
