"""Asset checks per feature: provenance, unique ids, nothing pending, nothing quarantined."""

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import polars as pl

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_dagster._io_manager import SourceFn
from metaxy_dagster._metadata import feature_asset_key
from metaxy_dagster._partitions import partition_ids, restrict
from metaxy_dagster._resources import MetaxyStore
from metaxy_dagster._retries import current_quarantine, hold_in_run

PROVENANCE_CHECK = "metaxy_provenance"
UNIQUE_CHECK = "metaxy_unique_ids"
PENDING_CHECK = "metaxy_nothing_pending"
QUARANTINE_CHECK = "metaxy_quarantine"
_SHOWN_IDS = 10


def check_specs(feature: Any) -> list[dg.AssetCheckSpec]:
    """The four check specs of a feature's asset."""
    asset = feature_asset_key(feature)
    return [
        dg.AssetCheckSpec(
            PROVENANCE_CHECK,
            asset=asset,
            description="Stored provenance equals a recomputation from upstream.",
        ),
        dg.AssetCheckSpec(UNIQUE_CHECK, asset=asset, description="No sample id is live twice."),
        dg.AssetCheckSpec(
            PENDING_CHECK,
            asset=asset,
            description="No new, stale or orphaned samples remain (quarantined and deliberately "
            "skipped samples aside).",
        ),
        dg.AssetCheckSpec(
            QUARANTINE_CHECK,
            asset=asset,
            description="No sample is quarantined after failing max_attempts times.",
        ),
    ]


def _result(name: str, asset: dg.AssetKey, bad: pl.DataFrame, what: str) -> dg.AssetCheckResult:
    shown = bad.head(_SHOWN_IDS).to_dicts()
    description = (
        f"{bad.height} sample(s) {what}, e.g. {shown}" if bad.height else f"no samples {what}"
    )
    return dg.AssetCheckResult(
        check_name=name,
        asset_key=asset,
        passed=bad.height == 0,
        description=description,
        metadata={"failing_samples": bad.height, "failing_ids": dg.MetadataValue.json(shown)},
    )


def _expected_provenance(
    store: mx.MetadataStore, spec: mx.FeatureSpec, stored: pl.DataFrame, samples: Any
) -> pl.DataFrame:
    """Recomputed provenance for the stored rows (roots: from the source's current inputs)."""
    ids = list(spec.id_columns)
    if spec.is_root:
        scratch = mx.MemoryStore(store.graph, hash_settings=store.hash_settings)
        inputs = pl.DataFrame(samples).join(stored.select(ids), on=ids, how="semi")
        return scratch.resolve_update(spec.key, samples=inputs).new
    # the live rows minus their provenance: write validation sees the user columns it expects
    return store.prepare_rows(
        spec.key, stored.drop(C.PROVENANCE, *map(C.provenance_column, spec.field_keys))
    )


def provenance_mismatches(
    store: mx.MetadataStore, feature: Any, ids: pl.DataFrame | None, samples: Any = None
) -> pl.DataFrame:
    """Ids of live samples whose stored provenance differs from a recomputation."""
    spec = store.graph.spec(feature)
    key = list(spec.id_columns)
    columns = [C.PROVENANCE, *(C.provenance_column(f) for f in spec.field_keys)]
    if not store.has_feature(spec.key):  # never written (a first run that kept no rows)
        return pl.DataFrame(schema={c: store.graph.definition(spec.key).columns[c] for c in key})
    live = restrict(store.read(spec.key), ids)
    stored = live.select(*key, *columns)
    if stored.is_empty():
        return stored.select(key)
    try:
        expected = _expected_provenance(store, spec, live, samples).select(*key, *columns)
    except mx.WriteValidationError:  # a live row lost its upstream: nothing to compare with
        expected = stored.clear()
    joined = stored.join(expected, on=key, how="left", suffix="__expected")
    differs = pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}__expected")) for c in columns)
    return joined.filter(differs).select(key).sort(key)


def duplicate_live_ids(
    store: mx.MetadataStore, feature: Any, ids: pl.DataFrame | None
) -> pl.DataFrame:
    """Ids with more than one row at their latest write (two live versions of one sample)."""
    spec = store.graph.spec(feature)
    key = list(spec.id_columns)
    history = restrict(store.history(spec.key), ids)
    if history.is_empty():
        return history.select(key)
    latest = history.filter(pl.col(C.WRITE_ID) == pl.col(C.WRITE_ID).max().over(key))
    return latest.group_by(key).len().filter(pl.col("len") > 1).select(key).sort(key)


def pending_ids(
    spec: mx.FeatureSpec, increment: mx.Increment, ids: pl.DataFrame | None
) -> pl.DataFrame:
    """Key columns of samples that are still new, stale or orphaned."""
    parts = [restrict(f, ids).select(spec.parent_key) for f in (increment.new, increment.stale)]
    orphaned = restrict(increment.orphaned, ids).select(spec.parent_key)
    return (
        pl.concat([*parts, orphaned], how="vertical_relaxed").unique().sort(list(spec.parent_key))
    )


def quarantined_ids(
    store: mx.MetadataStore, spec: mx.FeatureSpec, increment: mx.Increment | None
) -> pl.DataFrame:
    """Quarantined samples (every batch's) with their attempts and last error.

    With an increment, only those still quarantined for the provenance they have now.
    """
    key = list(spec.parent_key)
    held = (
        store.quarantined(spec.key) if increment is None else current_quarantine(store, increment)
    )
    return held.select(*key, "attempts", pl.col("reason").alias("last_error")).sort(key)


def check_results(
    store: mx.MetadataStore, feature: Any, ids: pl.DataFrame | None, source: SourceFn | None
) -> Iterator[dg.AssetCheckResult]:
    """Evaluate the four checks for the samples in `ids` (every sample when None).

    The quarantine check looks at every sample: quarantined ones are in no new batch.
    """
    spec = store.graph.spec(feature)
    asset = feature_asset_key(spec.key)
    samples = source() if spec.is_root and source is not None else None
    increment = None
    if spec.is_root and samples is None:  # nothing to recompute roots from
        for name in (PROVENANCE_CHECK, PENDING_CHECK):
            yield dg.AssetCheckResult(
                check_name=name,
                asset_key=asset,
                passed=True,
                description="skipped: the root has no source",
            )
    else:
        mismatches = provenance_mismatches(store, spec.key, ids, samples)
        yield _result(
            PROVENANCE_CHECK, asset, mismatches, "with provenance differing from a recomputation"
        )
        increment = store.resolve_update(spec.key, samples=samples)
        pending = pending_ids(spec, hold_in_run(store, increment), ids)
        yield _result(PENDING_CHECK, asset, pending, "still pending")
    yield _result(UNIQUE_CHECK, asset, duplicate_live_ids(store, spec.key, ids), "live twice")
    quarantined = quarantined_ids(store, spec, increment)
    yield _result(
        QUARANTINE_CHECK,
        asset,
        quarantined,
        "quarantined after repeated failures (release with store.release_quarantine)",
    )


def feature_checks(
    graph: mx.FeatureGraph,
    feature: Any,
    *,
    source: SourceFn | None = None,
    store_key: str = "metaxy_store",
) -> dg.AssetChecksDefinition:
    """Standalone checks for a hand-written feature asset (factory assets carry them already).

    Args:
        graph: the feature graph.
        feature: the feature key, spec or class.
        source: for roots, the source function (ids plus per-field input versions).
        store_key: resource key of the `MetaxyStore`.

    Example:
        >>> checks = feature_checks(graph, "crop")  # doctest: +SKIP
    """
    spec = graph.spec(feature)

    @dg.multi_asset_check(
        specs=check_specs(spec.key),
        name=f"{spec.key.table_name}_metaxy_checks",
        required_resource_keys={store_key},
    )
    def _checks(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        resource: MetaxyStore = getattr(context.resources, store_key)
        store = resource.open()
        ids = partition_ids(store, _check_partition_keys(context))
        yield from check_results(store, spec.key, ids, source)

    return _checks


def _check_partition_keys(context: dg.AssetCheckExecutionContext) -> list[str]:
    run_keys: Mapping[str, str] = context.run.tags
    key = run_keys.get("dagster/partition")
    return [key] if key else []
