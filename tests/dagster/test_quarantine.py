"""Failing samples, retries with backoff, quarantine and deliberate skips, on a real instance.

The sensor's clock is the test's: time moves by assignment, never by sleeping.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from metaxy_dagster import _retries
from tests.core import video
from tests.dagster.pipeline import COMPUTES, Source
from tests.dagster.sensing import execute, requests, tick

SENSOR = "metaxy_increment_sensor"
BACKOFF = 60


class Clock:
    """Now plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds + 1)


def definitions(graph, store, source, computes, clock, **options) -> dg.Definitions:
    """The video pipeline without face_detection (fewer steps per run: a cheaper test)."""
    resource = mxd.MetaxyStore(graph=graph, store=store)
    sensor_options = {"retry_backoff_seconds": BACKOFF, "clock": clock, **options}
    computes = {k: f for k, f in computes.items() if k != "face_detection"}
    return mxd.build_definitions(
        graph,
        computes,
        {"video": source},
        store=resource,
        sensor_options=sensor_options,
        exclude=["face_detection"],
    )


def metadata(result, asset: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def checks(result, asset: str) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key.path == [asset]
    }


def batched(store, request) -> list[str]:
    return sorted(store.batch_ids(request.partition_key)["sample_id"])


def crop_leaving_out(broken: set[str]):
    """A crop compute that returns no row for the samples in `broken` (while it holds any)."""

    def compute(context, increment: mx.Increment) -> pl.DataFrame:
        rows = increment.to_compute().filter(~pl.col("sample_id").is_in(sorted(broken)))
        return rows.with_columns(crop_path=pl.lit("c.mp4"))

    return compute


def transcript_skipping(increment: mx.Increment) -> pl.DataFrame:
    """Skip s0004 on purpose (with a reason); transcribe the others."""
    rows = increment.to_compute().with_columns(text=pl.lit("hi"))
    reason = pl.when(pl.col("sample_id") == "s0004").then(pl.lit("no speech"))
    return rows.with_columns(reason.alias(mx.columns.SKIP_REASON))


def test_a_failing_sample_is_retried_with_backoff_then_quarantined_until_its_code_changes(
    graph, store, instance
):
    broken = {"s0003"}
    source = Source(video.inputs(5))
    computes = {
        **COMPUTES,
        "crop": crop_leaving_out(broken),
        "transcript": lambda context, increment: transcript_skipping(increment),
    }
    clock = Clock()
    defs = definitions(graph, store, source, computes, clock, max_attempts=2)

    # Attempt 1: s0003 gets no crop row, s0004 is skipped by the transcript on purpose.
    (first,) = requests(tick(defs, SENSOR, instance))
    run = execute(defs, first, instance)
    assert run.success
    crop = metadata(run, "crop")
    assert (crop["metaxy/attempt"], crop["metaxy/failed"], crop["metaxy/retried"]) == (1, 1, 0)
    assert metadata(run, "transcript")["metaxy/skipped"] == 1
    assert store.read("transcript")["sample_id"].to_list() == ["s0000", "s0001", "s0002", "s0003"]
    assert checks(run, "transcript")["metaxy_nothing_pending"].passed  # a skip is not pending

    # Within the backoff nothing is batched; the skip waits for its inputs to change.
    waiting = tick(defs, SENSOR, instance)
    assert store.batches()["status"].to_list() == ["partial"]  # s0003 was left out
    assert isinstance(waiting, dg.SkipReason)
    assert "crop: 1 waiting to retry" in waiting.skip_message
    assert "transcript: 1 skipped" in waiting.skip_message

    # Attempt 2 after the backoff, in a batch of s0003 alone.
    clock.advance(BACKOFF)
    (retry,) = requests(tick(defs, SENSOR, instance))
    assert batched(store, retry) == ["s0003"]
    run = execute(defs, retry, instance)
    assert run.success and metadata(run, "crop")["metaxy/attempt"] == 2
    assert metadata(run, "crop")["metaxy/retried"] == 1

    # Out of attempts: quarantined, named (with its last error) by the tick and the check.
    quarantined = tick(defs, SENSOR, instance)
    assert isinstance(quarantined, dg.SkipReason)
    named = "crop: 1 quarantined, e.g. [{'sample_id': 's0003', 'attempts': 2, 'reason': 'the comp"
    assert named in quarantined.skip_message
    assert store.quarantined("crop")["sample_id"].to_list() == ["s0003"]
    # New inputs for s0004 release its skip (and run crop for it: the check sees s0003).
    source.frame = video.inputs(5).with_columns(
        audio=pl.when(pl.col("sample_id") == "s0004").then(pl.lit("new")).otherwise(pl.col("audio"))
    )
    (changed,) = requests(tick(defs, SENSOR, instance))
    assert batched(store, changed) == ["s0004"]
    run = execute(defs, changed, instance)
    check = checks(run, "crop")["metaxy_quarantine"]
    assert not check.passed and "s0003" in check.description and "no row" in check.description
    assert metadata(run, "crop")["metaxy/quarantined"] == 1
    assert metadata(run, "transcript")["metaxy/skipped"] == 1  # skipped again, for new inputs

    # The fix ships with a code-version bump: s0003's provenance moves, so it is retried.
    broken.clear()
    bumped = video.bump(graph, "crop", "frames", "2")
    store.graph = bumped
    defs = definitions(bumped, store, source, computes, clock, max_attempts=2)
    (fixed,) = requests(tick(defs, SENSOR, instance))
    assert "s0003" in batched(store, fixed)
    run = execute(defs, fixed, instance)
    assert checks(run, "crop")["metaxy_quarantine"].passed
    assert "s0003" in store.read("crop")["sample_id"].to_list()
    assert store.quarantined("crop").is_empty()
    assert isinstance(tick(defs, SENSOR, instance), dg.SkipReason)


def test_a_raising_compute_counts_its_whole_batch_and_only_the_limit_stops_it(
    graph, store, instance, monkeypatch
):
    def crop_raising(context, increment):
        raise RuntimeError("decoder crashed")

    computes = {
        **COMPUTES,
        "crop": crop_raising,
        # rows the store refuses (text is a string): they count like a raising compute
        "transcript": lambda context, increment: increment.to_compute().with_columns(text=1),
    }
    clock = Clock()
    defs = definitions(graph, store, Source(video.inputs(2)), computes, clock, max_attempts=1)
    (first,) = requests(tick(defs, SENSOR, instance))
    run = execute(defs, first, instance, raise_on_error=False)
    assert not run.success
    assert not store.has_feature("transcript")
    refused = store.sample_attempts("transcript")["reason"].to_list()
    assert len(refused) == 2 and refused[0].startswith("WriteValidationError")
    attempts = store.sample_attempts("crop")
    assert attempts["reason"].to_list() == ["RuntimeError: decoder crashed"] * 2

    clock.advance(BACKOFF)
    held = tick(defs, SENSOR, instance)
    assert store.batches()["status"].to_list() == ["failed"]
    assert isinstance(held, dg.SkipReason)
    assert "crop: 2 quarantined" in held.skip_message
    assert "transcript: 2 quarantined" in held.skip_message

    # The protection off: the same samples get a new batch (and a failing run) every backoff.
    monkeypatch.setattr(_retries, "ENFORCE_ATTEMPT_LIMIT", False)
    (again,) = requests(tick(defs, SENSOR, instance))
    assert batched(store, again) == ["s0000", "s0001"]


def test_the_backoff_doubles_with_each_failure():
    policy = _retries.RetryPolicy.of(3, 10, 60, None)
    failed_at = datetime(2026, 1, 1, tzinfo=UTC)
    records = pl.DataFrame({"attempts": [1, 2, 3], "attempted_at": [failed_at] * 3})
    waits = records.select(policy.next_attempt() - pl.col("attempted_at"))
    assert waits.to_series().dt.total_seconds().to_list() == [10, 20, 40]
    default = _retries.RetryPolicy.of(3, None, 60, None)  # the sensor interval
    assert default.backoff_seconds == 60
    with pytest.raises(mx.SpecError, match="max_attempts"):
        _retries.RetryPolicy.of(0, None, 60, None)
