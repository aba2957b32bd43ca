"""DeltaStore across processes: concurrent appends all land; a killed writer: all or nothing."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

import metaxy_core as mx
from tests.core.video import graph
from tests.stores.contract import write_root

REPO = Path(__file__).resolve().parents[2]
BATCHES = 8
BATCH_SIZE = 5


def worker_samples(worker: int, batch: int, size: int) -> pl.DataFrame:
    ids = [f"w{worker}-b{batch:02d}-{i:06d}" for i in range(size)]
    return pl.DataFrame({"sample_id": ids, "audio": ids, "frames": ids})


def append_batches(uri: str, worker: int, barrier) -> None:
    """One writer process: wait for the other, then append BATCHES small writes."""
    with mx.DeltaStore(uri, graph()) as store:
        barrier.wait(timeout=60)
        for batch in range(BATCHES):
            # Only this worker's samples: write the new rows (no orphan handling).
            samples = worker_samples(worker, batch, BATCH_SIZE)
            rows = store.resolve_update("video", samples=samples).new
            store.write("video", rows.with_columns(path=pl.lit(f"w{worker}")))


@pytest.mark.slow
def test_two_processes_appending_at_once_lose_no_rows(tmp_path):
    uri = str(tmp_path / "delta")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    writers = [context.Process(target=append_batches, args=(uri, w, barrier)) for w in (0, 1)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
    assert [p.exitcode for p in writers] == [0, 0]

    with mx.DeltaStore(uri, graph()) as store:
        history = store.history("video")
        assert history.height == 2 * BATCHES * BATCH_SIZE
        assert history["sample_id"].n_unique() == history.height
        assert history["path"].value_counts().sort("path")["count"].to_list() == [40, 40]
    # The table was created once and every write is one commit, whoever created it.
    assert DeltaTable(f"{uri}/video").version() == 2 * BATCHES - 1


CRASH_WRITER = """
import sys
import polars as pl
import metaxy_core as mx
from tests.core.video import graph
from tests.stores.test_delta_concurrency import worker_samples

uri, size = sys.argv[1], int(sys.argv[2])
with mx.DeltaStore(uri, graph()) as store:
    samples = worker_samples(0, 1, size)
    rows = store.resolve_update("video", samples=samples).new
    store.write("video", rows.with_columns(path=pl.lit("big.mp4")))
print("done", flush=True)
"""


def run_writer(uri: str, size: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CRASH_WRITER, uri, str(size)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def kill_when_data_files_appear(process: subprocess.Popen, table_dir: Path) -> None:
    """SIGKILL the writer as soon as it starts writing files, before its commit lands."""
    before = set(os.listdir(table_dir))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if set(os.listdir(table_dir)) - before:
            break
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.stdout is not None
    process.stdout.close()


@pytest.mark.slow
def test_writer_killed_mid_write_leaves_all_or_nothing_and_rerun_completes(tmp_path):
    uri, size = str(tmp_path / "delta"), 200_000
    with mx.DeltaStore(uri, graph()) as store:
        write_root(store, "video", worker_samples(0, 0, 10), path="small.mp4")

    writer = run_writer(uri, size)
    kill_when_data_files_appear(writer, tmp_path / "delta" / "video")
    assert writer.returncode == -signal.SIGKILL

    with mx.DeltaStore(uri, graph()) as store:
        paths = store.read("video")["path"].value_counts().sort("path")
        # Either the killed write committed whole or not at all (a kill before commit is the aim).
        assert paths.rows() in ([("small.mp4", 10)], [("big.mp4", size), ("small.mp4", 10)])
        assert store.history("video").height in (10, 10 + size)

    rerun = run_writer(uri, size)
    assert rerun.communicate(timeout=120)[0].decode().strip() == "done"
    with mx.DeltaStore(uri, graph()) as store:
        paths = store.read("video")["path"].value_counts().sort("path")
        assert paths.rows() == [("big.mp4", size), ("small.mp4", 10)]
        assert store.history("video").height == 10 + size
