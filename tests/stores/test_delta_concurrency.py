"""DeltaStore across processes: concurrent appends all land; a killed writer: all or nothing.

The append test runs once with the retries switched off (ours and delta-rs's own commit
retries) and must then see a write fail, so it shows what the retries protect. The crash
test reports which outcome the kill produced.
"""

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
from tests.stores.lined_up import line_up

REPO = Path(__file__).resolve().parents[2]
BATCHES = 8
BATCH_SIZE = 5
# Without retries, writers go on until one write conflicts (or give up after this many).
MAX_UNRETRIED_BATCHES = 20


def worker_samples(worker: int, batch: int, size: int) -> pl.DataFrame:
    ids = [f"w{worker}-b{batch:02d}-{i:06d}" for i in range(size)]
    return pl.DataFrame({"sample_id": ids, "audio": ids, "frames": ids})


def append_batches(uri: str, worker: int, barrier, retry: bool, stop, results) -> None:
    """One writer process: append small writes, each commit racing the other writer's.

    With `retry` off (ours and delta-rs's own commit retries), it stops at the first write
    that fails and tells the other writer to stop too.
    """
    from metaxy_core.stores import _delta_commits

    if not retry:
        assert hasattr(_delta_commits, "MAX_ATTEMPTS")
        assert hasattr(_delta_commits, "COMMIT_RETRIES")
        _delta_commits.MAX_ATTEMPTS = 1
        _delta_commits.COMMIT_RETRIES = 0
    arm = line_up(barrier, "video")  # each batch's commits race the other writer's
    written, failed = [], []
    with mx.DeltaStore(uri, graph()) as store:
        for batch in range(BATCHES if retry else MAX_UNRETRIED_BATCHES):
            if stop.is_set():
                break
            # Only this worker's samples: write the new rows (no orphan handling).
            samples = worker_samples(worker, batch, BATCH_SIZE)
            rows = store.resolve_update("video", samples=samples).new
            arm()
            try:
                store.write("video", rows.with_columns(path=pl.lit(f"w{worker}")))
            except mx.StoreError as exc:
                failed.append((batch, str(exc)))
                stop.set()
                barrier.abort()  # the other writer must not wait for this one
            else:
                written.append(batch)
    results.put((worker, written, failed))


def race_appends(uri: str, *, retry: bool) -> dict[int, tuple[list[int], list[tuple[int, str]]]]:
    """Two writers append at once to an existing table; returns what each wrote and failed."""
    with mx.DeltaStore(uri, graph()) as store:  # the table, settings and snapshot exist
        write_root(store, "video", worker_samples(9, 0, 1), path="seed")
    context = multiprocessing.get_context("spawn")
    barrier, stop, results = context.Barrier(2), context.Event(), context.Queue()
    writers = [
        context.Process(target=append_batches, args=(uri, w, barrier, retry, stop, results))
        for w in (0, 1)
    ]
    for process in writers:
        process.start()
    outcome = {}
    for _ in writers:
        worker, written, failed = results.get(timeout=300)
        outcome[worker] = (written, failed)
    for process in writers:
        process.join(timeout=60)
    assert [p.exitcode for p in writers] == [0, 0]
    return outcome


@pytest.mark.slow
@pytest.mark.parametrize("retry", [True, False], ids=["retry", "no-retry"])
def test_two_processes_appending_at_once_lose_no_rows(tmp_path, retry):
    uri = str(tmp_path / "delta")
    outcome = race_appends(uri, retry=retry)
    failures = [f for _, failed in outcome.values() for f in failed]
    if retry:
        assert failures == []
    else:  # the retry is what makes concurrent appends land: without it, one fails
        assert failures, "no write conflicted without retries: the test is blind"
        assert all("conflicted with concurrent writers" in message for _, message in failures)

    with mx.DeltaStore(uri, graph()) as store:
        history = store.history("video").filter(pl.col("path") != "seed")
    expected = sorted(
        f"w{worker}-b{batch:02d}-{i:06d}"
        for worker, (written, _) in outcome.items()
        for batch in written
        for i in range(BATCH_SIZE)
    )
    # Every successful write landed whole; a failed one left nothing.
    assert sorted(history["sample_id"].to_list()) == expected
    if retry:
        assert history.height == 2 * BATCHES * BATCH_SIZE
        # The seed created the table and every write is one commit.
        assert DeltaTable(f"{uri}/video").version() == 2 * BATCHES


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
def test_writer_killed_mid_write_leaves_all_or_nothing_and_rerun_completes(
    tmp_path, record_property
):
    uri, size = str(tmp_path / "delta"), 200_000
    with mx.DeltaStore(uri, graph()) as store:
        write_root(store, "video", worker_samples(0, 0, 10), path="small.mp4")
    big = set(worker_samples(0, 1, size)["sample_id"].to_list())

    writer = run_writer(uri, size)
    kill_when_data_files_appear(writer, tmp_path / "delta" / "video")
    assert writer.returncode == -signal.SIGKILL

    with mx.DeltaStore(uri, graph()) as store:
        rows = store.history("video")
    landed = rows.filter(pl.col("path") == "big.mp4")
    # The aim is a kill before the commit; a slow kill may come after it. Say which.
    outcome = "killed before its commit" if landed.is_empty() else "committed before the kill"
    record_property("killed_write", outcome)
    print(f"killed write: {outcome}")
    # All or nothing: exactly the killed write's rows, or none of them.
    assert rows.filter(pl.col("path") == "small.mp4").height == 10, outcome
    assert landed.is_empty() or set(landed["sample_id"].to_list()) == big, outcome
    assert rows.height in (10, 10 + size), outcome

    rerun = run_writer(uri, size)
    assert rerun.communicate(timeout=120)[0].decode().strip() == "done"
    with mx.DeltaStore(uri, graph()) as store:
        paths = store.read("video")["path"].value_counts().sort("path")
        assert paths.rows() == [("big.mp4", size), ("small.mp4", 10)]
        assert store.history("video").height == 10 + size
        # Still writable after the crash: one more small write lands.
        rows = store.resolve_update("video", samples=worker_samples(1, 0, 3)).new
        store.write("video", rows.with_columns(path=pl.lit("after.mp4")))
        assert store.read("video").height == 10 + size + 3
