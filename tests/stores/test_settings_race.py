"""Writers that open an empty store with different hash settings: one setting wins.

Settings are recorded at the first write. Two writers that opened the store while it was
empty each believe their settings are the store's; before the check after recording, both
wrote, and one writer's rows read as stale forever. Now the first recorded setting wins
and the other writer gets `HashSettingsMismatchError` with nothing written. Every test runs
once with the check switched off (`CHECK_RECORDED_SETTINGS = False`) and must then see
the loss. The memory store is one object per store: it cannot race.
"""

import multiprocessing
from pathlib import Path

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core.stores import _system_tables
from tests.core.video import graph, inputs
from tests.stores.contract import write_root

SETTINGS = {"a": mx.HashSettings("xxh3_64"), "b": mx.HashSettings("md5")}
PROTECTION = pytest.mark.parametrize("checked", [True, False], ids=["checked", "unchecked"])


def samples(writer: str) -> pl.DataFrame:
    """Each writer its own samples (so neither orphans the other's)."""
    ids = pl.format("{}-{}", pl.lit(writer), "sample_id").alias("sample_id")
    return inputs(4).with_columns(ids)


def write_new(store: mx.MetadataStore, writer: str) -> None:
    rows = store.resolve_update("video", samples=samples(writer)).new
    store.write("video", rows.with_columns(path=pl.lit(writer)))


def stale_or_new(store: mx.MetadataStore, writer: str) -> int:
    """How many of the writer's samples the store sees as needing work (0 if kept well)."""
    counts = store.resolve_update("video", samples=samples(writer)).counts()
    return counts["new"] + counts["stale"]


def outcome(uri: Path, results: dict[str, str]) -> tuple[list[str], list[str]]:
    """(recorded settings, writers whose stored rows do not match them)."""
    with mx.DeltaStore(uri, graph()) as store:
        recorded = pl.read_delta(f"{store.uri}/metaxy_system__settings")["hash"].to_list()
        broken = [w for w, r in results.items() if r == "ok" and stale_or_new(store, w)]
    return recorded, broken


# -- two processes on one Delta store ----------------------------------------------------------


def delta_writer(uri: str, writer: str, barrier, checked: bool, results) -> None:
    """Open the empty store with this writer's settings, wait for the other, then write."""
    assert hasattr(_system_tables, "CHECK_RECORDED_SETTINGS")
    _system_tables.CHECK_RECORDED_SETTINGS = checked
    with mx.DeltaStore(uri, graph(), hash_settings=SETTINGS[writer]) as store:
        barrier.wait(timeout=60)
        try:
            write_new(store, writer)
        except mx.HashSettingsMismatchError as exc:
            results.put((writer, f"mismatch: {exc}"))
        else:
            results.put((writer, "ok"))


@pytest.mark.slow
@PROTECTION
def test_two_processes_opening_an_empty_delta_store_record_one_setting(tmp_path, checked):
    uri = tmp_path / "delta"
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(2), context.Queue()
    writers = [
        context.Process(target=delta_writer, args=(str(uri), w, barrier, checked, queue))
        for w in SETTINGS
    ]
    for process in writers:
        process.start()
    results = dict(queue.get(timeout=120) for _ in writers)
    for process in writers:
        process.join(timeout=60)
    assert [p.exitcode for p in writers] == [0, 0]

    recorded, broken = outcome(uri, results)
    if checked:
        assert len(recorded) == 1
        assert sorted(r.split(":")[0] for r in results.values()) == ["mismatch", "ok"]
        assert broken == []
        (loser,) = [w for w, r in results.items() if r != "ok"]
        assert "Another writer recorded hash settings" in results[loser]
    else:  # both wrote: one writer's rows do not match the recorded settings
        assert list(results.values()) == ["ok", "ok"]
        assert broken, "both writers wrote but nothing reads stale: the test is blind"


# -- two store objects on one Delta store, in one process --------------------------------------


@PROTECTION
def test_second_store_object_writing_after_the_first_recorded_is_refused(
    tmp_path, monkeypatch, checked
):
    monkeypatch.setattr(_system_tables, "CHECK_RECORDED_SETTINGS", checked)
    uri = tmp_path / "delta"
    first = mx.DeltaStore(uri, graph(), hash_settings=SETTINGS["b"])
    second = mx.DeltaStore(uri, graph())  # the default (xxh3_64): the store is still empty
    write_new(first, "b")
    results = {"b": "ok"}
    if checked:
        with pytest.raises(mx.HashSettingsMismatchError, match="Another writer recorded"):
            write_new(second, "a")
        results["a"] = "mismatch"
        assert second.history("video")["path"].unique().to_list() == ["b"]  # nothing written
    else:
        write_new(second, "a")
        results["a"] = "ok"
    first.close()
    second.close()

    recorded, broken = outcome(uri, results)
    assert len(recorded) == 1
    assert broken == ([] if checked else ["a"])


def test_a_store_object_opened_with_other_settings_after_recording_is_refused_at_open(tmp_path):
    with mx.DeltaStore(tmp_path / "delta", graph(), hash_settings=SETTINGS["a"]) as store:
        write_root(store, "video", inputs(2), path="a")
    with pytest.raises(mx.HashSettingsMismatchError, match="md5"):
        mx.DeltaStore(tmp_path / "delta", graph(), hash_settings=SETTINGS["b"])


# -- DuckDB: one process holds the file at a time ----------------------------------------------


def duckdb_writer(path: str, writer: str, opened, checked: bool, results) -> None:
    """Open the store with this writer's settings (waiting for the file), then write."""
    assert hasattr(_system_tables, "CHECK_RECORDED_SETTINGS")
    _system_tables.CHECK_RECORDED_SETTINGS = checked
    try:
        with mx.DuckDBStore(path, graph(), hash_settings=SETTINGS[writer], lock_timeout=60) as s:
            opened.set()
            write_new(s, writer)
    except mx.HashSettingsMismatchError as exc:
        results.put((writer, f"mismatch: {exc}"))
    else:
        results.put((writer, "ok"))


@pytest.mark.slow
@PROTECTION
def test_two_processes_on_an_empty_duckdb_file_record_one_setting(tmp_path, checked):
    """The file lock lets one process in; the other opens after the first wrote and closed.

    DuckDB needs no check after recording: the second process reads the recorded settings
    when it opens, with or without the check.
    """
    path = str(tmp_path / "m.duckdb")
    context = multiprocessing.get_context("spawn")
    opened, queue = context.Event(), context.Queue()
    first = context.Process(target=duckdb_writer, args=(path, "a", opened, checked, queue))
    first.start()
    assert opened.wait(timeout=120)
    unused = context.Event()  # kept referenced until the child has read it
    second = context.Process(target=duckdb_writer, args=(path, "b", unused, checked, queue))
    second.start()
    results = dict(queue.get(timeout=120) for _ in (first, second))
    for process in (first, second):
        process.join(timeout=60)
    assert results["a"] == "ok"
    assert results["b"].startswith("mismatch")
    with mx.DuckDBStore(path, graph()) as store:
        assert store.hash_settings == SETTINGS["a"]
        assert store.read("video")["path"].unique().to_list() == ["a"]
        assert stale_or_new(store, "a") == 0
