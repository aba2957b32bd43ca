"""DeltaStore on object storage: a local S3-compatible server (moto), as in production.

The contract pack runs on `s3://` tables, several processes append at once (each commit is
a conditional write of the next log entry, so a lost race is retried, never overwritten),
and compaction keeps history readable.
"""

import polars as pl
import pytest

import metaxy_core as mx
from tests.core.video import graph, inputs
from tests.stores.contract import StoreContract, write_root
from tests.stores.test_delta_concurrency import BATCH_SIZE, BATCHES, race_appends


class TestDeltaStoreOnS3(StoreContract):
    @pytest.fixture
    def store_factory(self, s3_uri, s3_server):
        def make(graph: mx.FeatureGraph, **kw) -> mx.DeltaStore:
            return mx.DeltaStore(s3_uri, graph, storage_options=s3_server, **kw)

        return make


@pytest.mark.slow
@pytest.mark.parametrize("retry", [True, False], ids=["retry", "no-retry"])
def test_processes_appending_at_once_to_s3_lose_no_rows(s3_uri, s3_server, monkeypatch, retry):
    for name, value in s3_server.items():  # the writer processes read them from the environment
        monkeypatch.setenv(name, value)
    outcome = race_appends(s3_uri, retry=retry)
    failures = [f for _, failed in outcome.values() for f in failed]
    if retry:
        assert failures == []
    else:  # without retries a commit that lost its race fails (and writes nothing)
        assert failures, "no write conflicted without retries: the test is blind"
    with mx.DeltaStore(s3_uri, graph(), storage_options=s3_server) as store:
        history = store.history("video").filter(pl.col("path") != "seed")
    expected = sorted(
        f"w{worker}-b{batch:02d}-{i:06d}"
        for worker, (written, _) in outcome.items()
        for batch in written
        for i in range(BATCH_SIZE)
    )
    assert sorted(history["sample_id"].to_list()) == expected
    if retry:
        assert history.height == 2 * BATCHES * BATCH_SIZE


def test_compact_on_s3_keeps_history(s3_uri, s3_server):
    with mx.DeltaStore(s3_uri, graph(), storage_options=s3_server) as store:
        write_root(store, "video", inputs(4), path="v1.mp4")
        write_root(store, "video", inputs(4, audio_suffix="-v2", changed=2), path="v2.mp4")
        assert store.compact() == {"video": 2}
        assert store.read("video")["path"].to_list() == ["v2.mp4"] * 2 + ["v1.mp4"] * 2
        assert store.history("video").height == 6
        assert store.resolve_update(
            "video", samples=inputs(4, audio_suffix="-v2", changed=2)
        ).is_empty
