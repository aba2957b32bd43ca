"""Sensors: launch runs over change-set partitions, and clean up old finished partitions."""

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import dagster as dg
import polars as pl

import metaxy_core as mx
from metaxy_dagster._changes import (
    Changes,
    HoldFn,
    collect_changes,
    open_batches,
    reconcile_batches,
)
from metaxy_dagster._io_manager import SourceFn
from metaxy_dagster._metadata import feature_asset_key
from metaxy_dagster._partitions import MAX_PARTITION_REQUESTS, batch_key, sample_partition_key
from metaxy_dagster._payloads import with_companions
from metaxy_dagster._resources import MetaxyStore
from metaxy_dagster._retries import Held, RetryPolicy, held_samples
from metaxy_dagster._ticks import Tick

Mode = Literal["batch", "none", "sample"]
MODE_TAG = "metaxy/mode"
# Batch statuses whose runs are over: every sample written, some left out, the run failed.
FINISHED = ("done", "partial", "failed")
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _run_key(batch: dict[str, Any]) -> str:
    """Stable per manifest, so a re-sent request is deduplicated by the daemon.

    Sample partition keys repeat (a sample changes again later), so their run keys also
    carry the manifest's write time.
    """
    if batch["kind"] == "batch":
        return batch["batch_key"]
    return f"{batch['batch_key']}@{batch['updated_at']:%Y%m%dT%H%M%S%f}"


def _request(changes: Changes, batch: dict[str, Any], ids: pl.DataFrame) -> dg.RunRequest | None:
    selection = [feature_asset_key(k) for k in changes.selection_for(ids)]
    if not selection:
        return None
    return dg.RunRequest(
        run_key=_run_key(batch),
        partition_key=batch["batch_key"],
        asset_selection=selection,
        tags={MODE_TAG: batch["kind"]},
    )


def _requests_for_batches(
    store: mx.MetadataStore, changes: Changes, chunks: Sequence[tuple[str, pl.DataFrame]], kind: str
) -> list[dg.RunRequest]:
    """Write each manifest first, then build its run request (the partition is added after)."""
    for key, ids in chunks:
        store.write_batch(key, changes.anchor, ids, kind=kind)
    written = {
        row["batch_key"]: row for row in store.batches(status="pending").iter_rows(named=True)
    }
    requests = [_request(changes, written[key], ids) for key, ids in chunks]
    return [r for r in requests if r is not None]


def _resend(
    store: mx.MetadataStore, changes: Changes, runless: Sequence[dict[str, Any]]
) -> list[dg.RunRequest]:
    """Requests again for pending batches whose run never started (same run key: deduplicated).

    A batch whose samples have nothing left to compute is marked `abandoned`.
    """
    requests = []
    for batch in runless:
        request = _request(changes, batch, store.batch_ids(batch["batch_key"]))
        if request is None:
            store.set_batch_status(batch["batch_key"], "abandoned")
        else:
            requests.append(request)
    return requests


def _batch_chunks(
    ids: pl.DataFrame, size: int, count: int, now: datetime
) -> list[tuple[str, pl.DataFrame]]:
    ordered = ids.sort(ids.columns)
    chunks = [
        ordered.slice(start, size) for start in range(0, min(ordered.height, size * count), size)
    ]
    return [(batch_key(now, i, chunk), chunk) for i, chunk in enumerate(chunks)]


def _sample_chunks(ids: pl.DataFrame, count: int, cap: int) -> list[tuple[str, pl.DataFrame]]:
    if ids.height > cap:
        raise mx.MetaxyError(
            f"{ids.height} changed samples exceed the sample-mode cap of {cap} partitions. "
            "Hint: use mode='batch' (bounded change-set partitions) for large change sets."
        )
    ordered = ids.sort(ids.columns).head(count)
    return [
        (sample_partition_key(row), ordered.slice(i, 1))
        for i, row in enumerate(ordered.iter_rows(named=True))
    ]


class _Limits:
    def __init__(
        self,
        *,
        max_batch_size: int,
        max_batches_per_tick: int,
        max_open_batches: int,
        max_sample_partitions: int,
    ) -> None:
        for name, value in locals().items():
            if name != "self" and value < 1:
                raise mx.SpecError(f"{name} must be at least 1, got {value}.")
        for name, value in (
            ("max_batches_per_tick", max_batches_per_tick),
            ("max_sample_partitions", max_sample_partitions),
        ):
            if value > MAX_PARTITION_REQUESTS:
                raise mx.SpecError(
                    f"{name} must be at most {MAX_PARTITION_REQUESTS} "
                    "(Dagster's guidance for partition requests per tick)."
                )
        self.batch_size = max_batch_size
        self.per_tick = max_batches_per_tick
        self.open = max_open_batches
        self.sample_cap = max_sample_partitions


def _open_for_tick(resource: MetaxyStore) -> mx.MetadataStore | dg.SkipReason:
    """The store, waiting at most `sensor_lock_timeout` for a DuckDB file another process holds."""
    try:
        return resource.open(lock_timeout=resource.sensor_lock_timeout)
    except mx.StoreLockedError as exc:
        return dg.SkipReason(f"Skipped this tick: {exc} The next tick tries again.")


def _busy(
    context: dg.SensorEvaluationContext, job_name: str, max_active_runs: int | None
) -> dg.SkipReason | None:
    """A skip while `max_active_runs` runs of the job are queued or running."""
    if max_active_runs is None:
        return None
    active = context.instance.get_runs(
        dg.RunsFilter(job_name=job_name, statuses=_ACTIVE), limit=max_active_runs
    )
    if len(active) < max_active_runs:
        return None
    return dg.SkipReason(
        f"{len(active)} run(s) of {job_name} in progress (max_active_runs={max_active_runs}; "
        "an embedded DuckDB file admits one writer at a time): waiting for them to finish."
    )


def _evaluate(
    context: dg.SensorEvaluationContext,
    store: mx.MetadataStore,
    sources: Mapping[mx.FeatureKey, SourceFn],
    features: Sequence[mx.FeatureKey],
    partitions_def: dg.DynamicPartitionsDefinition | None,
    mode: Mode,
    limits: _Limits,
    policy: RetryPolicy,
    tick: Tick,
) -> dg.SensorResult | dg.SkipReason:
    def hold(increment: mx.Increment) -> Held | None:
        return held_samples(store, increment, policy)

    tick.reconcile(store)
    if mode == "none":
        return _evaluate_unpartitioned(context, store, sources, features, hold, tick)
    assert partitions_def is not None and partitions_def.name is not None  # checked at definition
    runless = reconcile_batches(context.instance, store, partitions_def.name)
    pending = open_batches(store)
    changes = collect_changes(
        store, sources, features, exclude=pending.ids, hold=hold, resolve=tick.resolve
    )
    tick.finish(changes.waiting)
    held = _log_held(context, changes)
    room = min(limits.per_tick, limits.open - pending.count)
    chunks: list[tuple[str, pl.DataFrame]] = []
    now = datetime.now(UTC)
    if not changes.is_empty and room > 0:
        if mode == "batch":
            chunks = _batch_chunks(changes.ids, limits.batch_size, room, now)
        else:
            chunks = _sample_chunks(changes.ids, room, limits.sample_cap)
    if pending.count + len(chunks) > 1:  # runs may overlap: features keyed otherwise run once
        changes = changes.with_solo()
    resent = _resend(store, changes, runless)
    if not chunks:
        if resent:
            return dg.SensorResult(run_requests=resent)
        if changes.unbatchable:
            return dg.SkipReason(
                f"Changed features {[k.path for k in changes.unbatchable]} cannot be batched: "
                "no feature has their increment key as id columns. Hint: use mode='none'."
            )
        if changes.is_empty:
            return dg.SkipReason(
                f"No changed samples to batch ({pending.count} batch(es) still open).{held}"
            )
        return dg.SkipReason(
            f"{pending.count} open batches reached the limit of {limits.open}; "
            "waiting for runs to finish."
        )
    requests = _requests_for_batches(store, changes, chunks, mode)
    add = partitions_def.build_add_request([key for key, _ in chunks])
    return dg.SensorResult(run_requests=resent + requests, dynamic_partitions_requests=[add])


def _log_held(context: dg.SensorEvaluationContext, changes: Changes) -> str:
    """Log the samples the tick left out; the same text for a skip message ("" if none)."""
    text = changes.describe_held()
    if not text:
        return ""
    context.log.info(f"Samples left out of new batches:\n{text}")
    return f" Left out:\n{text}"


def _evaluate_unpartitioned(
    context: dg.SensorEvaluationContext,
    store: mx.MetadataStore,
    sources: Mapping[mx.FeatureKey, SourceFn],
    features: Sequence[mx.FeatureKey],
    hold: HoldFn,
    tick: Tick,
) -> dg.SensorResult | dg.SkipReason:
    active = context.instance.get_runs(
        dg.RunsFilter(tags={MODE_TAG: "none"}, statuses=_ACTIVE), limit=1
    )
    if active:
        return dg.SkipReason(f"Run {active[0].run_id} is still in progress.")
    changes = collect_changes(
        store, sources, features, exclude=None, hold=hold, resolve=tick.resolve
    )
    tick.finish(changes.waiting)
    held = _log_held(context, changes)
    if changes.is_empty:
        return dg.SkipReason(f"No changed samples to compute.{held}")
    selection = [feature_asset_key(k) for k in changes.selection_for(None)]
    run_key = f"none-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=run_key, asset_selection=selection, tags={MODE_TAG: "none"})
        ]
    )


def increment_sensor(
    graph: mx.FeatureGraph,
    *,
    job: Any,
    sources: Mapping[Any, SourceFn] | None = None,
    features: Sequence[Any] | None = None,
    mode: Mode = "batch",
    partitions_def: dg.DynamicPartitionsDefinition | None = None,
    max_batch_size: int = 10_000,
    max_batches_per_tick: int = 10,
    max_open_batches: int = 100,
    max_sample_partitions: int = 1_000,
    max_active_runs: int | Literal["auto"] | None = "auto",
    max_attempts: int = 3,
    retry_backoff_seconds: float | None = None,
    clock: Callable[[], datetime] | None = None,
    name: str = "metaxy_increment_sensor",
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
    payloads: Mapping[Any, Sequence[dg.AssetKey]] | None = None,
    reconcile_every: int | None = 60,
) -> dg.SensorDefinition:
    """A sensor that finds changed samples and launches runs for them.

    Modes: `batch` writes a manifest per bounded batch of changed sample ids, adds one
    dynamic partition per batch and requests one run per batch (`run_key` = batch key);
    `none` requests one unpartitioned run per tick with changes; `sample` adds one
    partition per changed sample and refuses more than `max_sample_partitions`.
    Only features whose samples (or whose parent fields) changed are selected. An open
    batch whose run never started (its request was lost) has its request re-sent each tick
    with the same run key, which the daemon launches at most once.

    A sample whose compute raised or returned no row counts a failed attempt; it is batched
    again after a backoff that doubles with each failure, and after `max_attempts` failures
    it is quarantined: left out of new batches (and named in the tick's message) until its
    inputs or code version change or `store.release_quarantine` releases it. Samples the
    compute skipped with a `metaxy_skip_reason` wait for their inputs to change.

    A tick costs the change: features resolve from their watermarks, and roots whose
    source is a `ChangeSource` from what it reported since the cursor the sensor keeps
    (Dagster's sensor cursor). Each tick logs what it resolved, how and how long it took.

    Args:
        graph: the feature graph.
        job: the asset job to launch (partitioned by `partitions_def` unless mode is `none`).
        sources: root feature -> function returning ids plus one input version column per field.
        features: the features that have assets (default: every feature in the graph).
        mode: `batch`, `none` or `sample`.
        partitions_def: the batch partitions (required unless mode is `none`).
        max_batch_size: samples per batch.
        max_batches_per_tick: new batches (partitions and runs) per tick (at most 25,000).
        max_open_batches: batches whose runs have not finished yet.
        max_sample_partitions: the most changed samples `sample` mode accepts in one tick.
        max_active_runs: launch nothing while this many runs of `job` are queued or
            running; `auto` (default) is 1 for an embedded DuckDB file (one writer at a
            time) and no limit otherwise; None is no limit.
        max_attempts: failed attempts after which a sample is quarantined.
        retry_backoff_seconds: the wait after a first failure, doubled after each further
            one (default: `minimum_interval_seconds`).
        clock: returns the current time (UTC) for the backoff; tests pass their own.
        name: the sensor name, as for `dg.sensor`.
        minimum_interval_seconds: the least time between ticks, as for `dg.sensor`.
        default_status: running or stopped when first loaded, as for `dg.sensor`.
        payloads: feature -> payload asset keys (see `build_definitions(payload_assets=)`)
            that every run selecting the feature selects too.
        reconcile_every: every this many ticks (the first included), list every root
            fully and run `store.reconcile()`, logging any disagreement of incremental
            with full change detection as a warning; None: never.

    Raises:
        SpecError: an unknown mode, a limit below 1, a negative backoff, or a partitioned
            mode without partitions.

    Example:
        >>> sensor = increment_sensor(  # doctest: +SKIP
        ...     graph, job=job, sources={"video": list_videos},
        ...     partitions_def=batch_partitions())
    """
    if not isinstance(graph, mx.FeatureGraph):
        raise mx.SpecError(f"increment_sensor needs a FeatureGraph, got {type(graph).__name__}.")
    if mode not in ("batch", "none", "sample"):
        raise mx.SpecError(f"Unknown sensor mode {mode!r}: use 'batch', 'none' or 'sample'.")
    if mode != "none" and (partitions_def is None or partitions_def.name is None):
        raise mx.SpecError(f"Mode {mode!r} needs partitions_def=batch_partitions().")
    if reconcile_every is not None and reconcile_every < 1:
        raise mx.SpecError(f"reconcile_every must be at least 1 (or None), got {reconcile_every}.")
    limits = _Limits(
        max_batch_size=max_batch_size,
        max_batches_per_tick=max_batches_per_tick,
        max_open_batches=max_open_batches,
        max_sample_partitions=max_sample_partitions,
    )
    policy = RetryPolicy.of(max_attempts, retry_backoff_seconds, minimum_interval_seconds, clock)
    source_by_key = {graph.spec(f).key: fn for f, fn in (sources or {}).items()}
    keys = [graph.spec(f).key for f in features] if features is not None else list(graph.keys)
    companions = {graph.spec(f).key: list(k) for f, k in (payloads or {}).items()}

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
    )
    def _sensor(
        context: dg.SensorEvaluationContext, metaxy_store: MetaxyStore
    ) -> dg.SensorResult | dg.SkipReason:
        limit = max_active_runs
        if limit == "auto":
            limit = 1 if metaxy_store.is_single_writer else None
        busy = _busy(context, job.name, limit)
        if busy is not None:
            return busy
        store = _open_for_tick(metaxy_store)
        if isinstance(store, dg.SkipReason):
            return store
        tick = Tick(context, source_by_key, reconcile_every=reconcile_every)
        result = _evaluate(
            context, store, source_by_key, keys, partitions_def, mode, limits, policy, tick
        )
        return with_companions(result, companions)

    return _sensor


def cleanup_sensor(
    partitions_def: dg.DynamicPartitionsDefinition,
    *,
    keep: int = 100,
    max_deletes_per_tick: int = 1_000,
    name: str = "metaxy_cleanup_sensor",
    minimum_interval_seconds: int = 300,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """A sensor deleting old finished batch partitions; the store keeps every sample and manifest.

    Args:
        partitions_def: the batch partitions.
        keep: how many of the newest finished partitions to keep.
        max_deletes_per_tick: the most partitions deleted in one tick.
        name: the sensor name, as for `dg.sensor`.
        minimum_interval_seconds: the least time between ticks, as for `dg.sensor`.
        default_status: running or stopped when first loaded, as for `dg.sensor`.

    Example:
        >>> sensor = cleanup_sensor(batch_partitions(), keep=50)  # doctest: +SKIP
    """
    if not isinstance(partitions_def, dg.DynamicPartitionsDefinition) or not partitions_def.name:
        raise mx.SpecError(
            "cleanup_sensor needs named dynamic partitions, e.g. batch_partitions()."
        )
    partitions_name: str = partitions_def.name

    @dg.sensor(
        name=name, minimum_interval_seconds=minimum_interval_seconds, default_status=default_status
    )
    def _sensor(
        context: dg.SensorEvaluationContext, metaxy_store: MetaxyStore
    ) -> dg.SensorResult | dg.SkipReason:
        store = _open_for_tick(metaxy_store)
        if isinstance(store, dg.SkipReason):
            return store
        reconcile_batches(context.instance, store, partitions_name)
        finished = set(store.batches().filter(pl.col("status").is_in(FINISHED))["batch_key"])
        existing = context.instance.get_dynamic_partitions(partitions_name)
        old = sorted(k for k in existing if k in finished)[
            : max(0, len(finished & set(existing)) - keep)
        ]
        doomed = old[:max_deletes_per_tick]
        if not doomed:
            return dg.SkipReason(f"At most {keep} finished partitions; nothing to delete.")
        return dg.SensorResult(
            dynamic_partitions_requests=[partitions_def.build_delete_request(doomed)]
        )

    return _sensor
