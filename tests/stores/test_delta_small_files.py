"""Delta system tables merge their small files once they pile up, and lose no row doing so.

Each sensor tick or run appends a few rows to a system table (here: attempt records), one
data file per append. With merging switched off (`MAX_SMALL_FILES = None`) the files grow
with every append, which is what the bounded-files test must then see fail.
"""

import threading

import polars as pl
import pytest
from deltalake import DeltaTable

import metaxy_core as mx
from metaxy_core.stores import _delta_small_files
from metaxy_core.stores._attempts import ATTEMPTS_TABLE
from tests.core.video import graph, inputs
from tests.stores.contract import write_root

APPENDS = 12


def attempt_files(store: mx.DeltaStore) -> int:
    return len(DeltaTable(f"{store.uri}/{ATTEMPTS_TABLE}").file_uris())


def fail(store: mx.DeltaStore, sample: str, reason: str) -> None:
    video = store.read("video").filter(pl.col("sample_id") == sample)
    store.record_attempts(
        "video", video.select("sample_id", mx.columns.PROVENANCE), status="failed", reason=reason
    )


@pytest.fixture
def store(tmp_path):
    with mx.DeltaStore(tmp_path / "delta", graph()) as store:
        write_root(store, "video", inputs(4), path="p")
        yield store


@pytest.mark.parametrize("merging", [True, False], ids=["merged", "unmerged"])
def test_a_system_table_keeps_few_files_and_every_row(store, monkeypatch, merging):
    monkeypatch.setattr(_delta_small_files, "MAX_SMALL_FILES", 4 if merging else None)
    most = 0
    for i in range(APPENDS):
        fail(store, "s0001", f"error {i}")
        most = max(most, attempt_files(store))
    attempts = store.sample_attempts("video")
    assert attempts.select("sample_id", "attempts", "reason").rows() == [
        ("s0001", APPENDS, f"error {APPENDS - 1}")
    ]
    if merging:
        assert most <= 5, f"{most} files: the small files were not merged"
    else:
        assert most == APPENDS


def test_appends_racing_a_merge_are_all_kept(store, monkeypatch):
    monkeypatch.setattr(_delta_small_files, "MAX_SMALL_FILES", 2)
    samples = ["s0001", "s0002"]
    errors: list[BaseException] = []

    def work(sample: str) -> None:
        try:
            with mx.DeltaStore(store.uri, graph()) as mine:
                for i in range(6):
                    fail(mine, sample, f"{sample} error {i}")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in samples]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    attempts = store.sample_attempts("video").sort("sample_id")
    assert attempts.select("sample_id", "attempts").rows() == [("s0001", 6), ("s0002", 6)]


@pytest.mark.parametrize("through_snapshot", [True, False], ids=["snapshot", "optimize"])
def test_two_merges_racing_never_double_rows(store, monkeypatch, through_snapshot):
    """The race made deterministic: a merge commits from a snapshot taken before another's."""
    monkeypatch.setattr(_delta_small_files, "MAX_SMALL_FILES", None)
    for i in range(4):
        fail(store, "s0001", f"error {i}")
    path = f"{store.uri}/{ATTEMPTS_TABLE}"
    late = DeltaTable(path)  # read before the other merge lands
    monkeypatch.setattr(_delta_small_files, "MAX_SMALL_FILES", 2)
    monkeypatch.setattr(_delta_small_files, "MERGE_THROUGH_SNAPSHOT", through_snapshot)
    assert _delta_small_files.merge_if_many(DeltaTable(path), path)
    _delta_small_files.merge_if_many(late, path)
    rows = pl.read_delta(path).height
    if through_snapshot:
        assert rows == 4
    else:
        assert rows == 8, "delta-rs no longer doubles rows here: optimize.compact() may be safe"
