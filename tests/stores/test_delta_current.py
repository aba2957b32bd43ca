"""DeltaStore's current-rows checkpoint: reads stay right whatever state the checkpoint is in.

The checkpoint holds the latest rows as of one log version; reads settle the log's tail over
it. The protection test runs once with the tail check switched off (`CHECK_TAIL = False`)
and must then read stale rows.
"""

import polars as pl
import pytest
from deltalake import DeltaTable

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core.stores import _delta_current
from tests.core.video import graph, inputs
from tests.stores.contract import write_root

N = 40


def from_log(store: mx.DeltaStore) -> pl.DataFrame:
    """The latest live row per sample, derived from the full history (the reference)."""
    rows = store.history("video").sort(C.WRITE_ID).unique("sample_id", keep="last")
    return view(rows.filter(pl.col(C.DELETED_AT).is_null()))


def view(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.select("sample_id", "path", C.PROVENANCE).sort("sample_id")


def checkpoint_version(store: mx.DeltaStore) -> int:
    table = DeltaTable(f"{store.uri}/{_delta_current.CHECKPOINT_DIR}/video")
    checkpoint = _delta_current.read_checkpoint(table)
    assert checkpoint is not None, "a full rewrite builds the checkpoint"
    return checkpoint.log_version


def rewrite(store: mx.DeltaStore, label: str, changed: int) -> None:
    """Write new inputs for the first `changed` samples (the others stay as they are)."""
    samples = inputs(N, audio_suffix=label, changed=N).head(changed)
    rows = store.resolve_update("video", samples=samples).to_compute()
    store.write("video", rows.with_columns(path=pl.lit(label)))


@pytest.fixture
def store(tmp_path):
    with mx.DeltaStore(tmp_path / "delta", graph()) as store:
        write_root(store, "video", inputs(N), path="first")  # one row per sample: no checkpoint
        rewrite(store, "full", changed=N)  # a full rewrite: the checkpoint is built
        yield store


@pytest.mark.parametrize("check_tail", [True, False], ids=["tail-checked", "tail-unchecked"])
def test_reads_settle_the_tail_over_a_stale_checkpoint(store, monkeypatch, check_tail):
    built_at = checkpoint_version(store)
    rewrite(store, "small", changed=2)  # below the rebuild threshold: only the tail has it
    assert checkpoint_version(store) == built_at
    monkeypatch.setattr(_delta_current, "CHECK_TAIL", check_tail)
    read = view(store.read("video"))
    if check_tail:
        assert read.equals(from_log(store))
        assert read.filter(pl.col("path") == "small").height == 2
    else:  # the checkpoint alone misses the tail's rows
        assert not read.equals(from_log(store))


def test_a_failed_rebuild_keeps_the_write_and_reads_stay_right(store, monkeypatch, tmp_path):
    def killed(path, rows, *args, **kwargs):
        # What a writer killed mid-commit leaves: a data file the log never names.
        rows.head(3).write_parquet(f"{path}/part-00000-killed.parquet")
        raise RuntimeError("killed while writing the checkpoint")

    built_at = checkpoint_version(store)
    monkeypatch.setattr(_delta_current, "write_deltalake", killed)
    rewrite(store, "again", changed=N)  # the log commit lands, the rebuild dies
    assert checkpoint_version(store) == built_at
    assert view(store.read("video")).equals(from_log(store))
    assert store.resolve_update(
        "video", samples=inputs(N, audio_suffix="again", changed=N)
    ).is_empty
    monkeypatch.undo()
    rewrite(store, "later", changed=N)  # the next write rebuilds it
    assert checkpoint_version(store) > built_at
    assert view(store.read("video")).equals(from_log(store))


def test_a_hard_delete_never_reads_deleted_rows_from_the_checkpoint(store):
    gone = pl.DataFrame({"sample_id": ["s0000", "s0001", "s0002"]})
    store.delete("video", gone, hard=True)
    read = view(store.read("video"))
    assert read.equals(from_log(store))
    assert read.height == N - 3


def test_reads_after_many_rewrites_match_the_log(store):
    for i in range(3):
        rewrite(store, f"r{i}", changed=N)
        rewrite(store, f"p{i}", changed=3)
    store.delete("video", pl.DataFrame({"sample_id": ["s0005"]}))  # a soft delete marker
    assert view(store.read("video")).equals(from_log(store))
