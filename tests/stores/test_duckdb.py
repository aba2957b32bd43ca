"""DuckDBStore passes the store contract, plus what only a database file has: locks, crashes."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl
import pytest

import metaxy_core as mx
from tests.core.video import graph, inputs
from tests.stores.contract import StoreContract, materialize_video, write_root


class TestDuckDBStore(StoreContract):
    @pytest.fixture
    def store_factory(self, tmp_path):
        def make(graph: mx.FeatureGraph, **kw) -> mx.DuckDBStore:
            return mx.DuckDBStore(tmp_path / "metadata.duckdb", graph, **kw)

        return make


# -- what only a database file has: locks, read-only opens, crashes --------------------------

REPO = Path(__file__).parents[2]
HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


@contextmanager
def running(*args: str) -> Iterator[subprocess.Popen]:
    """A child python process (run from the repo root) that is killed on exit."""
    cmd = [sys.executable, "-c", *args]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with subprocess.Popen(cmd, **pipes, text=True, cwd=REPO) as proc:
        try:
            yield proc
        finally:
            proc.kill()


def first_line(proc: subprocess.Popen) -> str:
    """The child's first line of output; its stderr if it died before printing one."""
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline().strip()
    if not line:
        proc.wait()
        return f"child exited {proc.returncode}: {proc.stderr.read()}"
    return line


def test_locked_file_raises_after_lock_timeout(tmp_path):
    path = tmp_path / "m.duckdb"
    with running(HOLD_LOCK, str(path), "30") as holder:
        assert first_line(holder) == "locked"
        with pytest.raises(mx.StoreLockedError, match=r"m\.duckdb.*0\.3 s"):
            mx.DuckDBStore(path, graph(), lock_timeout=0.3)


def test_writer_waits_for_the_lock_then_writes(tmp_path):
    path = tmp_path / "m.duckdb"
    with running(HOLD_LOCK, str(path), "0.5") as holder:
        assert first_line(holder) == "locked"
        with mx.DuckDBStore(path, graph(), lock_timeout=20) as store:
            write_root(store, "video", inputs(3), path="v.mp4")
            assert store.read("video").height == 3


def test_read_only_store_reads_and_refuses_writes(tmp_path):
    path = tmp_path / "m.duckdb"
    with pytest.raises(mx.StoreError, match="does not exist"):
        mx.DuckDBStore(path, graph(), read_only=True)
    with mx.DuckDBStore(path, graph(), hash_settings=mx.HashSettings("md5")) as store:
        materialize_video(store, inputs(4))
    with mx.DuckDBStore(path, graph(), read_only=True) as store:
        assert store.hash_settings == mx.HashSettings("md5")
        assert store.resolve_update("crop").is_empty
        with pytest.raises(mx.StoreError, match="read_only"):
            write_root(store, "video", inputs(5), path="v.mp4")


def test_current_table_survives_copies_of_old_history(tmp_path):
    """Copying older rows in must not replace newer current rows."""
    with mx.DuckDBStore(tmp_path / "m.duckdb", graph()) as store:
        old = mx.MemoryStore(graph())
        write_root(old, "video", inputs(3), path="old.mp4")
        write_root(store, "video", inputs(3), path="new.mp4")
        old.copy_to(store, features=["video"])
        assert store.history("video").height == 6
        assert store.read("video")["path"].to_list() == ["new.mp4"] * 3


CRASHING_WRITER = """
import os, sys, time
import polars as pl
import metaxy_core as mx
from metaxy_core.stores import _duckdb
from tests.core.video import graph, inputs

path, n = sys.argv[1], int(sys.argv[2])
original = _duckdb.DuckDBStore._insert

def insert_then_pause(self, schema, table, source=_duckdb._STAGED):
    original(self, schema, table, source)
    if schema == "main" and table == "video":  # the log holds the new rows; nothing committed
        print("mid-write", flush=True)
        time.sleep(60)

_duckdb.DuckDBStore._insert = insert_then_pause
with mx.DuckDBStore(path, graph()) as store:
    rows = store.resolve_update("video", samples=inputs(n, audio_suffix="-v2", changed=n))
    store.write("video", rows.to_compute().with_columns(path=pl.lit("crashed.mp4")))
"""


@pytest.mark.slow
def test_killed_writer_leaves_whole_write_or_none(tmp_path):
    path = tmp_path / "m.duckdb"
    n = 150_000  # larger than a DuckDB row group, so uncommitted blocks reach the file
    with mx.DuckDBStore(path, graph()) as store:
        write_root(store, "video", inputs(n), path="v.mp4")
        before = store.read("video")
    with running(CRASHING_WRITER, str(path), str(n)) as writer:
        assert first_line(writer) == "mid-write"
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    with mx.DuckDBStore(path, graph()) as store:
        assert store.history("video").height == n
        assert store.read("video").equals(before)
        rerun = write_root(store, "video", inputs(n, audio_suffix="-v2", changed=n), path="v2.mp4")
        assert rerun.counts() == {"new": 0, "stale": n, "orphaned": 0}
        assert store.read("video")["path"].unique().to_list() == ["v2.mp4"]
        assert store.resolve_update(
            "video", samples=inputs(n, audio_suffix="-v2", changed=n)
        ).is_empty


def test_a_failed_append_rolls_back_and_raises_its_own_cause(tmp_path):
    """The staged rows are unregistered after the rollback: the real error is not masked."""
    spec = mx.FeatureSpec("notes", id_columns=["id"], fields=["text"])
    samples = pl.DataFrame({"id": ["a"], "text": ["t"]})
    with mx.DuckDBStore(tmp_path / "m.duckdb", mx.FeatureGraph([spec])) as store:
        rows = store.resolve_update("notes", samples=samples).new
        store.write("notes", rows.with_columns(score=pl.lit(1)))
        bad = store.prepare_rows("notes", rows.with_columns(score=pl.lit("high")))
        # The primitive itself, below the type check that write() runs first.
        with pytest.raises(duckdb.ConversionException, match="'high'"):
            store._append("notes", bad)
        assert store.history("notes").height == 1
        store.write("notes", rows.with_columns(score=pl.lit(2)))
        assert store.read("notes")["score"].to_list() == [2]


def test_one_process_may_open_a_file_twice(tmp_path):
    """Connections to one file share a catalog: each registers its own xxh3 function."""
    path = tmp_path / "m.duckdb"
    first = mx.DuckDBStore(path, graph())
    write_root(first, "video", inputs(3), path="v.mp4")
    with mx.DuckDBStore(path, graph()) as second:
        first.close()  # the first connection's function goes; the second's stays
        assert second.resolve_update("crop").counts()["new"] == 3
        materialize_video(second, inputs(3))
    with mx.DuckDBStore(path, graph()) as third:
        assert third.resolve_update("transcript").is_empty
