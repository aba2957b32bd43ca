"""DeltaStore passes the store contract; plus what only a Delta directory can show."""

import polars as pl
import pytest
from deltalake import DeltaTable

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core.stores._delta import ARCHIVE_DIR
from metaxy_core.stores._delta_commits import holds_one_row_per_sample
from tests.core.video import graph, inputs
from tests.stores.contract import StoreContract, materialize_video, write_root


class TestDeltaStore(StoreContract):
    @pytest.fixture
    def store_factory(self, tmp_path):
        def make(graph: mx.FeatureGraph, **kw) -> mx.DeltaStore:
            return mx.DeltaStore(tmp_path / "delta", graph, **kw)

        return make


@pytest.fixture
def store(tmp_path):
    with mx.DeltaStore(tmp_path / "delta", graph()) as store:
        yield store


def test_one_delta_table_per_feature_and_one_commit_per_write(store, tmp_path):
    write_root(store, "video", inputs(3), path="v.mp4")
    write_root(store, "video", inputs(3, audio_suffix="-v2", changed=1), path="v.mp4")
    table = DeltaTable(str(tmp_path / "delta" / "video"))
    assert table.version() == 1  # created by the first write, one commit for the second
    assert DeltaTable.is_deltatable(str(tmp_path / "delta" / "metaxy_system__settings"))


def test_reads_equal_the_memory_store(store):
    memory = mx.MemoryStore(graph())
    for target in (store, memory):
        materialize_video(target, inputs(20))
        materialize_video(target, inputs(20, audio_suffix="-v2", changed=5))
        target.delete("crop", pl.DataFrame({"sample_id": ["s0001"]}))
    volatile = [C.CREATED_AT, C.UPDATED_AT, C.WRITE_ID]
    for key in ("video", "crop", "face_detection", "transcript"):
        ours, reference = store.read(key), memory.read(key)
        assert ours.schema == reference.schema
        assert ours.drop(volatile).equals(reference.drop(volatile))
        assert store.history(key).schema == memory.history(key).schema


def test_all_null_columns_get_the_table_type(tmp_path):
    class Doc(mx.Feature, spec=mx.FeatureSpec("doc", id_columns=["doc_id"], fields=["text"])):
        title: str | None

    with mx.DeltaStore(tmp_path / "delta", mx.FeatureGraph([Doc])) as store:
        samples = pl.DataFrame({"doc_id": ["d1", "d2"], "text": ["t1", "t2"]})
        rows = store.resolve_update("doc", samples=samples).to_compute()
        store.write("doc", rows.with_columns(title=pl.lit(None)))
        assert store.read("doc").schema["title"] == pl.String
        assert store.read("doc")[C.MATERIALIZATION_ID].to_list() == [None, None]


def test_store_on_a_file_is_refused(tmp_path):
    path = tmp_path / "not-a-dir"
    path.write_text("x")
    with pytest.raises(mx.StoreError, match="not-a-dir"):
        mx.DeltaStore(path, graph())


def rewrite_video(store: mx.DeltaStore, times: int, n: int) -> None:
    """Rewrite every one of `n` video samples `times` times."""
    for i in range(times):
        write_root(store, "video", inputs(n, audio_suffix=f"-r{i}", changed=n), path=f"v{i}.mp4")


def test_compact_keeps_latest_rows_and_archives_history(store):
    materialize_video(store, inputs(10))
    rewrite_video(store, 3, 10)
    store.delete("video", pl.DataFrame({"sample_id": ["s0009"]}))
    before_read = store.read("video", include_deleted=True)
    before_history = store.history("video")
    crop_stale = store.resolve_update("crop").stale.sort("sample_id")

    assert store.compact(["video"]) == {"video": 31}
    assert store.read("video", include_deleted=True).equals(before_read)
    assert store.history("video").equals(before_history)
    assert store.resolve_update("crop").stale.sort("sample_id").equals(crop_stale)
    table = pl.scan_delta(str(store.uri + "/video")).collect()
    assert table.height == 10  # one row per sample, the deleted marker included
    assert store.compact(["video"]) == {"video": 0}


def test_compact_without_history_drops_superseded_rows(store):
    write_root(store, "video", inputs(5), path="v.mp4")
    rewrite_video(store, 1, 5)
    assert store.compact(keep_history=False) == {"video": 5}
    assert store.history("video").height == 5
    assert not DeltaTable.is_deltatable(f"{store.uri}/{ARCHIVE_DIR}/video")


def test_hard_delete_also_removes_archived_rows(store):
    write_root(store, "video", inputs(3), path="v.mp4")
    rewrite_video(store, 1, 3)
    store.compact()
    store.delete("video", pl.DataFrame({"sample_id": ["s0001"]}), hard=True)
    assert "s0001" not in store.history("video")["sample_id"].to_list()
    assert store.history("video").height == 4


def test_compact_keeps_a_concurrent_append(store, tmp_path):
    write_root(store, "video", inputs(4), path="v.mp4")
    rewrite_video(store, 1, 4)
    snapshot = DeltaTable(str(tmp_path / "delta" / "video"))  # what compaction reads
    with mx.DeltaStore(tmp_path / "delta", graph()) as other:  # a second writer lands meanwhile
        write_root(other, "video", inputs(6, audio_suffix="-r0", changed=4), path="late.mp4")
    assert store._compact_snapshot(snapshot, "video", ["sample_id"], keep_history=True) == 4
    assert store.read("video")["path"].to_list() == ["v0.mp4"] * 4 + ["late.mp4"] * 2
    assert store.history("video").height == 10


def test_tables_vouch_for_one_row_per_sample_only_while_true(store, tmp_path):
    path = str(tmp_path / "delta" / "video")
    write_root(store, "video", inputs(4), path="v.mp4")
    assert holds_one_row_per_sample(DeltaTable(path))  # created by one write
    rewrite_video(store, 1, 4)
    assert not holds_one_row_per_sample(DeltaTable(path))
    store.compact()
    assert holds_one_row_per_sample(DeltaTable(path))
    store.delete("video", pl.DataFrame({"sample_id": ["s0000"]}))
    assert not holds_one_row_per_sample(DeltaTable(path))
    assert store.read("video")["sample_id"].to_list() == ["s0001", "s0002", "s0003"]


def test_a_compaction_racing_an_append_does_not_vouch(store, tmp_path):
    path = str(tmp_path / "delta" / "video")
    write_root(store, "video", inputs(3), path="v.mp4")
    rewrite_video(store, 1, 3)
    snapshot = DeltaTable(path)
    with mx.DeltaStore(tmp_path / "delta", graph()) as other:
        write_root(other, "video", inputs(3, audio_suffix="-r0", changed=2), path="late.mp4")
    store._compact_snapshot(snapshot, "video", ["sample_id"], keep_history=False)
    assert not holds_one_row_per_sample(DeltaTable(path))  # 3 vouched, 4 present
    assert store.read("video")["path"].to_list() == ["v0.mp4", "v0.mp4", "late.mp4"]


# -- errors name the table and the file ------------------------------------------------------


def test_a_truncated_data_file_is_named_in_a_store_error(store, tmp_path):
    write_root(store, "video", inputs(50), path="v.mp4")
    (data,) = (tmp_path / "delta" / "video").glob("*.parquet")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    reopened = mx.DeltaStore(tmp_path / "delta", graph())
    with pytest.raises(mx.StoreError) as error:
        reopened.read("video")
    reopened.close()
    # The reader's error (polars' ComputeError; a pyo3 PanicException, which is no
    # Exception, through scan_delta) is the cause; the store names the file.
    assert type(error.value.__cause__).__name__ in ("ComputeError", "PanicException")
    assert "read() on feature video" in str(error.value)
    assert f"Damaged data file(s) (missing, or not the size the Delta log recorded): {data}" in (
        str(error.value)
    )


def test_a_corrupt_commit_is_named_with_its_feature_and_table(store, tmp_path):
    write_root(store, "video", inputs(3), path="v.mp4")
    table = tmp_path / "delta" / "video"
    (table / "_delta_log" / "00000000000000000001.json").write_text("{not json\n")
    with pytest.raises(mx.StoreError, match="Could not open feature video") as error:
        mx.DeltaStore(tmp_path / "delta", graph())  # opening reads the stored schemas
    assert f"(Delta table {table})" in str(error.value)
    assert error.value.__cause__ is not None
