"""The IO manager: hands an asset its increment and writes back only the rows it returns."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dagster as dg
import narwhals as nw
import polars as pl

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_dagster._metadata import content_version, preview
from metaxy_dagster._partitions import partition_ids, restrict, write_manual_manifests
from metaxy_dagster._resources import MetaxyStore
from metaxy_dagster._retries import Outcome, hold_in_run, outcome, split_skips

SourceFn = Callable[[], Any]
_SHOWN_IDS = 10


@dataclass(frozen=True)
class FeatureRows:
    """Validated rows of one feature, ready for `MetaxyIOManager.handle_output` to write."""

    feature: mx.FeatureKey
    rows: pl.DataFrame
    orphaned: pl.DataFrame
    outcome: Outcome | None = None


def run_partition_keys(
    context: dg.AssetExecutionContext | dg.OutputContext | dg.InputContext,
) -> list[str]:
    """The partition keys of the run, sorted ([] for an unpartitioned run)."""
    if isinstance(context, dg.AssetExecutionContext):
        partitioned = context.has_partition_key or context.has_partition_key_range
        return sorted(context.partition_keys) if partitioned else []
    # An unpartitioned reader of a partitioned feature gets every key: read the whole table then.
    if not (context.has_asset_partitions and context.has_partition_key):
        return []
    return sorted(context.asset_partition_keys)


def _to_polars(rows: Any, feature: mx.FeatureKey) -> pl.DataFrame:
    """The compute's rows as polars; anything but a dataframe (None too) is refused by name."""
    if isinstance(rows, pl.DataFrame):
        return rows
    if isinstance(rows, pl.LazyFrame):
        return rows.collect()
    try:
        return nw.from_native(rows, eager_only=True).to_polars()
    except TypeError:
        raise mx.WriteValidationError(
            f"The compute function of {feature} returned {type(rows).__name__}; return a "
            "dataframe of rows for the increment's samples (an empty one writes nothing)."
        ) from None


def _restricted(increment: mx.Increment, ids: pl.DataFrame | None) -> mx.Increment:
    if ids is None:
        return increment
    return mx.Increment(
        increment.feature,
        restrict(increment.new, ids),
        restrict(increment.stale, ids),
        restrict(increment.orphaned, ids),
        increment.status,
        increment.missing_upstreams,
        increment.source,
    )


def check_in_increment(spec: mx.FeatureSpec, increment: mx.Increment, rows: pl.DataFrame) -> None:
    """Raise `OutOfIncrementError` naming ids of rows that are not new or stale samples."""
    key = list(spec.parent_key)
    missing = [c for c in key if c not in rows.columns]
    if missing:
        raise mx.WriteValidationError(f"Rows for {spec.key} lack the key column(s) {missing}.")
    allowed = increment.to_compute().select(key)
    outside = (
        rows.select(key)
        .unique()
        .join(allowed.cast({c: rows.schema[c] for c in key}), on=key, how="anti")
    )
    if outside.height:
        shown = outside.sort(key).head(_SHOWN_IDS).to_dicts()
        raise mx.OutOfIncrementError(
            f"{outside.height} row(s) returned for {spec.key} are not in its increment "
            f"(new or stale samples of this run), e.g. {shown}. "
            "Return rows only for samples of increment.to_compute()."
        )


def with_increment_provenance(
    spec: mx.FeatureSpec, increment: mx.Increment, rows: pl.DataFrame
) -> pl.DataFrame:
    """The rows with the increment's provenance, whatever provenance columns they carried.

    Rows built from stored rows (e.g. `store.read`) carry the old provenance; written as
    is, the sample would stay stale forever.
    """
    key = list(spec.parent_key)
    provenance = [C.PROVENANCE, *(C.provenance_column(f) for f in spec.field_keys)]
    given = increment.to_compute().select(*key, *provenance).unique(subset=key)
    return rows.drop([c for c in provenance if c in rows.columns]).join(
        given.cast({c: rows.schema[c] for c in key}), on=key, how="left"
    )


def _live_versions(store: mx.MetadataStore, spec: mx.FeatureSpec) -> pl.DataFrame:
    """Ids and data versions of the live rows (empty, typed, if the feature was never written)."""
    if not store.has_feature(spec.key):
        empty = store.read(spec.key).select(spec.id_columns)
        return empty.with_columns(pl.lit(None, pl.String).alias(C.DATA_VERSION))
    return store.read(spec.key, columns=[C.DATA_VERSION]).select(*spec.id_columns, C.DATA_VERSION)


class MetaxyIOManager(dg.ConfigurableIOManager):
    """Gives feature assets their increment and writes back only the rows they return.

    Output metadata: `dagster/row_count` (live rows after the write), rows written (also as
    `dagster/partition_row_count` in a partitioned run), new/stale/orphaned counts and a
    preview; the data version is content based.

    Example:
        >>> io = MetaxyIOManager(store=MetaxyStore(graph=graph))  # doctest: +SKIP
    """

    store: dg.ResourceDependency[MetaxyStore]

    def load_increment(
        self, context: dg.AssetExecutionContext, feature: Any, *, source: SourceFn | None = None
    ) -> mx.Increment:
        """The feature's increment for this run, restricted to the run's batch manifests.

        Samples quarantined or skipped for their current provenance are left out.

        Args:
            context: the asset's execution context (its partition keys name batches).
            feature: the feature key.
            source: for roots, returns the ids plus one input version column per field.

        Raises:
            WriteValidationError: a root without a source.
        """
        store = self.store.open()
        spec = store.graph.spec(feature)
        if spec.is_root and source is None:
            raise mx.WriteValidationError(
                f"Root feature {spec.key} needs a source function giving its samples."
            )
        samples = source() if spec.is_root and source is not None else None
        increment = store.resolve_update(spec.key, samples=samples)
        keys = run_partition_keys(context)
        manual = write_manual_manifests(store, keys, increment)
        if manual:
            context.log.info(
                f"Partition(s) {manual} had no batch manifest (added by hand): they now hold "
                f"{store.batch_ids(manual[0]).height} sample(s) of {spec.key}'s increment."
            )
        return hold_in_run(store, _restricted(increment, partition_ids(store, keys)))

    def output(
        self, increment: mx.Increment, rows: Any, *, batch_key: str | None = None
    ) -> dg.MaterializeResult:
        """Validate the compute function's rows; the result carries them and a content data version.

        The rows' provenance columns are replaced by the increment's (joined on the parent key).
        Rows with a non-null `metaxy_skip_reason` mark samples skipped on purpose: they are
        recorded, not written. Samples without a row count a failed attempt (in `batch_key`).

        Raises:
            OutOfIncrementError: rows for samples that are not new or stale in `increment`.
            WriteValidationError: rows the store would refuse.
        """
        store = self.store.open()
        spec = store.graph.spec(increment.feature)
        frame, skips = split_skips(spec, _to_polars(rows, spec.key))
        if skips.height:
            check_in_increment(spec, increment, skips)
        ids = list(spec.id_columns)
        if frame.is_empty():  # no rows (with or without columns): nothing to write
            frame = pl.DataFrame()
        if frame.width:
            check_in_increment(spec, increment, frame)
            frame = with_increment_provenance(spec, increment, frame)
            prepared = store.prepare_rows(spec.key, frame).select(*ids, C.DATA_VERSION)
        else:
            prepared = pl.DataFrame()
        live = _live_versions(store, spec)
        # The live table after the write: rewritten and orphaned samples replaced or gone.
        for gone in (prepared, increment.orphaned):
            if gone.height:
                live = live.join(
                    gone.select(ids).cast({c: live.schema[c] for c in ids}), on=ids, how="anti"
                )
        after = pl.concat([live, prepared], how="vertical_relaxed") if prepared.height else live
        counts = increment.counts()
        attempts = outcome(store, increment, frame, skips, batch_key)
        metadata = {
            "dagster/row_count": after.height,
            "metaxy/new": counts["new"],
            "metaxy/stale": counts["stale"],
            "metaxy/orphaned": counts["orphaned"],
            **attempts.metadata,
            "metaxy/preview": preview(frame),
        }
        return dg.MaterializeResult(
            value=FeatureRows(spec.key, frame, increment.orphaned, attempts),
            data_version=dg.DataVersion(content_version(after, ids)),
            metadata=metadata,
        )

    def handle_output(self, context: dg.OutputContext, obj: FeatureRows) -> None:
        if not isinstance(obj, FeatureRows):
            raise mx.WriteValidationError(
                f"MetaxyIOManager got {type(obj).__name__} for "
                f"{context.asset_key.to_user_string()}; "
                "feature assets must return MetaxyIOManager.output(increment, rows)."
            )
        written = self.store.write(obj.feature, obj.rows) if obj.rows.width else 0
        deleted = self.store.delete(obj.feature, obj.orphaned) if obj.orphaned.height else 0
        if obj.outcome is not None:  # after the write: a sample counts as written only then
            obj.outcome.record(self.store.open())
        metadata = {"metaxy/rows_written": written, "metaxy/tombstones": deleted}
        if context.has_asset_partitions:  # a batch partition's rows are those its run wrote
            metadata["dagster/partition_row_count"] = written
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        """The live rows of an upstream feature (restricted to the run's batches if partitioned)."""
        store = self.store.open()
        key = mx.FeatureKey(context.asset_key.path)
        rows = store.read(key)
        return restrict(rows, partition_ids(store, run_partition_keys(context)))
