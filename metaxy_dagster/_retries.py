"""Retries, quarantine and deliberate skips of samples.

The sensor leaves out of new batches the samples of a feature that are quarantined,
deliberately skipped, or waiting for their next attempt (backoff); a run leaves out the
quarantined and skipped ones and records what happened to the samples it did not write.
Every hold applies to the provenance it was recorded with: a sample whose inputs or code
version changed is computed again.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

import metaxy_core as mx
from metaxy_core import columns as C

# Whether failing samples are quarantined after `max_attempts` (tests switch it off to show
# that a failing sample is then batched again after every backoff, forever).
ENFORCE_ATTEMPT_LIMIT = True
LEFT_OUT = "the compute returned no row for the sample (and no skip reason)"
_HELD_STATUSES = ("quarantined", "skipped")
_FAILING = ("failed", "quarantined")
_SHOWN = 5
_MAX_DOUBLINGS = 20  # the backoff stops growing after about a million times the first wait

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing sample is tried, and how long the sensor waits between tries."""

    max_attempts: int
    backoff_seconds: float
    clock: Clock = utc_now

    @classmethod
    def of(
        cls, max_attempts: int, backoff_seconds: float | None, interval: int, clock: Clock | None
    ) -> "RetryPolicy":
        """Checked arguments of `increment_sensor`; the backoff defaults to the sensor interval."""
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise mx.SpecError(
                f"max_attempts must be an integer of at least 1, got {max_attempts}."
            )
        backoff = interval if backoff_seconds is None else backoff_seconds
        if backoff < 0:
            raise mx.SpecError(f"retry_backoff_seconds must not be negative, got {backoff}.")
        if clock is not None and not callable(clock):
            raise mx.SpecError(f"clock must be a function returning a datetime, got {clock!r}.")
        return cls(max_attempts, float(backoff), clock or utc_now)

    def next_attempt(self) -> pl.Expr:
        """When a failed sample may be tried again: the backoff, doubled per further failure."""
        doublings = (pl.col("attempts") - 1).clip(0, _MAX_DOUBLINGS)
        wait = pl.lit(self.backoff_seconds * 1000) * pl.lit(2.0).pow(doublings)
        return pl.col("attempted_at") + pl.duration(milliseconds=wait.cast(pl.Int64))


@dataclass(frozen=True)
class Held:
    """The samples of one feature's changes that a tick leaves out, and why."""

    feature: mx.FeatureKey
    key: list[str]
    quarantined: pl.DataFrame
    waiting: pl.DataFrame
    skipped: pl.DataFrame

    @property
    def ids(self) -> pl.DataFrame:
        parts = (self.quarantined, self.waiting, self.skipped)
        return pl.concat([p.select(self.key) for p in parts], how="vertical_relaxed")

    def describe(self) -> str:
        """One line naming the quarantined samples (with their last error) and counting the rest."""
        parts = []
        if self.quarantined.height:
            shown = self.quarantined.head(_SHOWN).select(*self.key, "attempts", "reason")
            parts.append(f"{self.quarantined.height} quarantined, e.g. {shown.to_dicts()}")
        if self.waiting.height:
            first = self.waiting["next_attempt"].min()
            parts.append(f"{self.waiting.height} waiting to retry (next at {first:%H:%M:%S} UTC)")
        if self.skipped.height:
            parts.append(f"{self.skipped.height} skipped by the compute")
        return f"{self.feature}: " + "; ".join(parts)


def _samples(increment: mx.Increment, key: list[str]) -> pl.DataFrame:
    """The key columns and provenance of the samples to compute (typed empty if none)."""
    todo = increment.to_compute()
    if todo.is_empty():  # an increment of a never-written upstream has no provenance column
        return pl.DataFrame(schema={**{c: todo.schema[c] for c in key}, C.PROVENANCE: pl.String()})
    return todo.select(*key, C.PROVENANCE).unique(subset=key)


def _current(records: pl.DataFrame, increment: mx.Increment, key: list[str]) -> pl.DataFrame:
    """The records that still apply: same provenance as the sample has in `increment`."""
    current = _samples(increment, key)
    if records.is_empty() or current.is_empty():
        return records.clear()
    current = current.cast({c: records.schema[c] for c in key})
    return records.join(current, on=[*key, C.PROVENANCE], how="semi")


def held_samples(
    store: mx.MetadataStore, increment: mx.Increment, policy: RetryPolicy
) -> Held | None:
    """The samples of the increment a tick leaves out; quarantines those out of attempts."""
    spec = store.graph.spec(increment.feature)
    key = list(spec.parent_key)
    records = _current(store.sample_attempts(spec.key), increment, key)
    if records.is_empty():
        return None
    failing = records.filter(pl.col("status").is_in(_FAILING))
    if ENFORCE_ATTEMPT_LIMIT:
        spent = pl.col("attempts") >= policy.max_attempts
        newly = failing.filter(spent & (pl.col("status") == "failed"))
        if newly.height:
            store.record_attempts(spec.key, newly, status="quarantined")
        quarantined, failing = failing.filter(spent), failing.filter(~spent)
    else:
        quarantined = failing.clear()
    waiting = failing.with_columns(policy.next_attempt().alias("next_attempt")).filter(
        pl.col("next_attempt") > policy.clock()
    )
    skipped = records.filter(pl.col("status") == "skipped")
    if not (quarantined.height or waiting.height or skipped.height):
        return None
    return Held(spec.key, key, quarantined, waiting, skipped)


def without(frame: pl.DataFrame, ids: pl.DataFrame) -> pl.DataFrame:
    """Rows of `frame` whose key (the columns of `ids`) is not in `ids`."""
    if frame.is_empty() or ids.is_empty():
        return frame
    return frame.join(
        ids.cast({c: frame.schema[c] for c in ids.columns}), on=ids.columns, how="anti"
    )


def hold_in_run(store: mx.MetadataStore, increment: mx.Increment) -> mx.Increment:
    """The increment without the samples quarantined or skipped for their current provenance."""
    spec = store.graph.spec(increment.feature)
    key = list(spec.parent_key)
    records = _current(store.sample_attempts(spec.key), increment, key)
    held = records.filter(pl.col("status").is_in(_HELD_STATUSES)).select(key)
    if held.is_empty():
        return increment
    return dataclasses.replace(
        increment, new=without(increment.new, held), stale=without(increment.stale, held)
    )


def split_skips(spec: mx.FeatureSpec, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows to write, and the skip markers (key columns and a reason) among them."""
    key = list(spec.parent_key)
    if C.SKIP_REASON not in rows.columns:
        return rows, pl.DataFrame(schema={**dict.fromkeys(key, pl.String()), "reason": pl.String()})
    reason = pl.col(C.SKIP_REASON)
    missing = [c for c in key if c not in rows.columns]
    if missing:
        raise mx.WriteValidationError(
            f"Skip markers of {spec.key} lack the key column(s) {missing}."
        )
    skips = rows.filter(reason.is_not_null()).select(*key, reason.cast(pl.String).alias("reason"))
    return rows.filter(reason.is_null()).drop(C.SKIP_REASON), skips.unique(subset=key)


@dataclass(frozen=True)
class Outcome:
    """What a run records about an increment's samples once its rows are written."""

    feature: mx.FeatureKey
    batch: str | None
    left_out: pl.DataFrame
    skipped: pl.DataFrame
    succeeded: pl.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)

    def record(self, store: mx.MetadataStore) -> None:
        for frame, status, reason in (
            (self.left_out, "failed", LEFT_OUT),
            (self.skipped, "skipped", None),
            (self.succeeded, "succeeded", "written after failed attempts"),
        ):
            if frame.height:
                store.record_attempts(
                    self.feature, frame, status=status, reason=reason, batch_key=self.batch
                )


def outcome(
    store: mx.MetadataStore,
    increment: mx.Increment,
    written: pl.DataFrame,
    skips: pl.DataFrame,
    batch: str | None,
) -> Outcome:
    """Which samples the compute left out, skipped, or wrote after failing; attempt metadata."""
    spec = store.graph.spec(increment.feature)
    key = list(spec.parent_key)
    todo = _samples(increment, key)
    failing = store.sample_attempts(spec.key).filter(pl.col("status").is_in(_FAILING))
    before = _current(failing, increment, key)  # failures of the provenance computed now
    written_keys = written.select(key).unique() if written.width else todo.clear().select(key)
    skipped = todo.join(skips.cast({c: todo.schema[c] for c in key}), on=key, how="inner")
    left_out = without(without(todo, written_keys), skips.select(key))
    # Written now: earlier failures (of any provenance, a quarantine too) no longer stand.
    succeeded = todo.join(written_keys.cast({c: todo.schema[c] for c in key}), on=key, how="semi")
    succeeded = succeeded.join(failing.select(key), on=key, how="semi")
    metadata = {
        "metaxy/attempt": int(before["attempts"].max() or 0) + 1,
        "metaxy/retried": before.height,
        "metaxy/skipped": skipped.height,
        "metaxy/failed": left_out.height,
        "metaxy/quarantined": store.quarantined(spec.key).height,
    }
    return Outcome(spec.key, batch, left_out, skipped, succeeded, metadata)


def current_quarantine(store: mx.MetadataStore, increment: mx.Increment) -> pl.DataFrame:
    """The quarantine records of the increment's samples that still hold (same provenance)."""
    spec = store.graph.spec(increment.feature)
    return _current(store.quarantined(spec.key), increment, list(spec.parent_key))


def record_failure(
    store: mx.MetadataStore, increment: mx.Increment, error: BaseException, batch: str | None
) -> None:
    """Count a failed attempt for every sample the compute was given (it raised)."""
    todo = increment.to_compute()
    if todo.height:
        spec = store.graph.spec(increment.feature)
        store.record_attempts(
            spec.key,
            todo.select(*spec.parent_key, C.PROVENANCE),
            status="failed",
            reason=f"{type(error).__name__}: {error}",
            batch_key=batch,
        )
