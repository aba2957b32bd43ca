"""The increment sensor keeps a cursor: change sources report only what changed, features
resolve from their watermarks, and every `reconcile_every` ticks a full tick lists every root
and reports disagreements of incremental with full change detection."""

import json
import logging

import polars as pl
import pytest

import metaxy_dagster as mxd
from metaxy_core.stores import _incremental
from tests.core import video
from tests.dagster import sensing
from tests.dagster.pipeline import COMPUTES, Source

SENSOR = "metaxy_increment_sensor"


@pytest.fixture(autouse=True)
def marks_at_any_size(monkeypatch):
    """25 samples: keep watermarks anyway, so that ticks resolve from them."""
    monkeypatch.setattr(_incremental, "FULL_BELOW_ROWS", 0)
    monkeypatch.setattr(_incremental, "FULL_ABOVE_SHARE", None)


class Feed(Source):
    """A source that also reports the samples changed since a cursor (a change counter)."""

    def __init__(self, frame: pl.DataFrame) -> None:
        super().__init__(frame)
        self.version = 0
        self.changed_at = {i: 0 for i in frame["sample_id"]}
        self.asked: list[str | None] = []

    def change(self, ids: list[str], audio: str) -> None:
        self.version += 1
        self.changed_at |= {i: self.version for i in ids}
        self.frame = self.frame.with_columns(
            pl.when(pl.col("sample_id").is_in(ids))
            .then(pl.lit(audio))
            .otherwise("audio")
            .alias("audio")
        )

    def changes_since(self, cursor: str | None) -> tuple[pl.DataFrame, str]:
        self.asked.append(cursor)
        since = -1 if cursor is None else int(cursor)
        changed = [i for i, v in self.changed_at.items() if v > since]
        return self.frame.filter(pl.col("sample_id").is_in(changed)), str(self.version)


def definitions(graph, store, source, **options):
    resource = mxd.MetaxyStore(graph=graph, store=store)
    return mxd.build_definitions(
        graph, COMPUTES, {"video": source}, store=resource, sensor_options=options
    )


def settle(sensor) -> None:
    for step in sensor.settle():
        assert step.success


def test_ticks_read_only_what_the_change_source_reports(graph, store, instance):
    feed = Feed(video.inputs(25))
    assert isinstance(feed, mxd.ChangeSource)
    sensor = sensing.tester(definitions(graph, store, feed, reconcile_every=100), SENSOR, instance)
    settle(sensor)
    assert feed.asked[0] is None  # the first tick lists everything
    feed.change(["s0003", "s0007"], "new-audio")
    feed.asked.clear()
    step = sensor.tick()
    assert feed.asked == ["0"]  # only what changed since the kept cursor
    (request,) = step.run_requests
    assert sorted(store.batch_ids(request.partition_key)["sample_id"]) == ["s0003", "s0007"]
    cursor = json.loads(step.cursor)
    assert cursor["sources"] == {"video": "1"}
    assert sensor.run(request).success
    quiet = sensor.tick()
    assert quiet.skipped and json.loads(quiet.cursor)["ticks"] == cursor["ticks"] + 1
    counts = store.resolve_update("crop")
    assert counts.is_empty and counts.resolved_by == "watermark"


def test_a_sample_in_an_open_batch_keeps_the_old_source_cursor(graph, store, instance):
    feed = Feed(video.inputs(25))
    sensor = sensing.tester(definitions(graph, store, feed, reconcile_every=100), SENSOR, instance)
    settle(sensor)
    feed.change(["s0001"], "a2")
    (first,) = sensor.tick().run_requests  # batched; its run has not run yet
    feed.change(["s0001"], "a3")  # changes again while its batch is open
    held = sensor.tick()
    assert not held.partition_requests  # no new batch; the open one's request is re-sent
    assert [r.run_key for r in held.run_requests] == [first.run_key]
    assert json.loads(held.cursor)["sources"] == {"video": "1"}  # reported again next tick
    assert sensor.run(first).success  # the run lists the source itself: it computes a3
    feed.asked.clear()
    after = sensor.tick()
    assert feed.asked == ["1"]  # the second change is reported again, now nothing is open
    assert after.skipped
    assert json.loads(after.cursor)["sources"] == {"video": "2"}
    assert store.resolve_update("video", samples=feed()).is_empty


def full_tick(sensor, every: int):
    """Tick (asserting quiet ticks skip) until the next full tick; return that one."""
    while json.loads(sensor.cursor)["ticks"] % every:
        assert sensor.tick().skipped
    return sensor.tick()


def test_full_ticks_list_every_sample_and_find_deletions(graph, store, instance):
    feed = Feed(video.inputs(25))
    sensor = sensing.tester(definitions(graph, store, feed, reconcile_every=3), SENSOR, instance)
    settle(sensor)
    feed.frame = feed.frame.filter(pl.col("sample_id") != "s0024")  # a feed reports no deletions
    assert sensor.tick().skipped or json.loads(sensor.cursor)["ticks"] % 3 == 1
    (request,) = full_tick(sensor, 3).run_requests
    assert store.batch_ids(request.partition_key)["sample_id"].to_list() == ["s0024"]
    assert sensor.run(request).success
    assert "s0024" not in store.read("crop")["sample_id"].to_list()


def test_full_ticks_report_and_reset_a_drifted_watermark(
    graph, store, instance, monkeypatch, caplog, capfd
):
    feed = Feed(video.inputs(25))
    sensor = sensing.tester(definitions(graph, store, feed, reconcile_every=3), SENSOR, instance)
    settle(sensor)
    # Another writer rewrites s0002's video; a broken watermark logic then loses the work of
    # every feature downstream (pending samples are forgotten on the second resolve).
    feed.change(["s0002"], "zz")
    rows = store.resolve_update("video", samples=feed()).stale
    store.write(
        "video", rows.with_columns(pl.lit(v).alias(k) for k, v in video.VALUES["video"].items())
    )
    monkeypatch.setattr(_incremental, "RECHECK_PENDING", False)
    for key in ("crop", "face_detection", "transcript", "crop", "face_detection", "transcript"):
        store.resolve_update(key)
    monkeypatch.setattr(_incremental, "RECHECK_PENDING", True)
    assert store.resolve_update("crop").is_empty  # drifted: nothing to do, it says
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="metaxy"):
        step = full_tick(sensor, 3)
    assert "Reconciliation of crop" in caplog.text
    tick_log = capfd.readouterr().err  # the tick's own log, as the UI shows it
    assert "crop's incremental increment disagreed with the full diff" in tick_log
    assert "transcript's incremental increment disagreed" in tick_log
    assert "reconciliation: 2 disagreement(s)" in tick_log
    assert "crop: 0 new, 1 stale, 0 orphaned; by watermark" in tick_log
    (request,) = step.run_requests  # reset to the full answer, the work is found again
    assert store.batch_ids(request.partition_key)["sample_id"].to_list() == ["s0002"]
