"""What changed since the last runs: changed sample ids and fields per feature; open batches."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dagster as dg
import polars as pl

import metaxy_core as mx
from metaxy_dagster._io_manager import SourceFn

BATCH_KINDS = ("batch", "sample")
_FAILED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


@dataclass(frozen=True)
class FeatureChange:
    """The changed samples of one feature and the fields whose versions move."""

    ids: pl.DataFrame
    fields: frozenset[str]


@dataclass(frozen=True)
class Changes:
    """Changed features of one tick, keyed by the id columns of the first changed feature.

    Features keyed by other columns (aggregations, expansion children) are `unkeyed`: they
    are selected without restricting their samples.
    """

    graph: mx.FeatureGraph
    features: Sequence[mx.FeatureKey]
    anchor: mx.FeatureKey | None = None
    keyed: dict[mx.FeatureKey, FeatureChange] = field(default_factory=dict)
    unkeyed: dict[mx.FeatureKey, FeatureChange] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not self.keyed and not self.unkeyed

    @property
    def ids(self) -> pl.DataFrame:
        """Every changed sample id of the keyed features, unique."""
        return pl.concat([c.ids for c in self.keyed.values()], how="vertical_relaxed").unique()

    def selection_for(self, ids: pl.DataFrame | None) -> list[mx.FeatureKey]:
        """Features to run for the samples `ids` (all changes when None), in topological order.

        These are the changed features and those reading a changed field, transitively.
        """
        touched = dict(self.unkeyed)
        for key, change in self.keyed.items():
            if ids is None or change.ids.join(ids, on=ids.columns, how="semi").height:
                touched[key] = change
        selected = set(touched)
        for key, change in touched.items():
            for f in change.fields:
                selected.update(k for k, _ in self.graph.field_downstream(key, f))
        return [k for k in self.graph.topological_order() if k in selected and k in self.features]


def _feature_change(spec: mx.FeatureSpec, increment: mx.Increment) -> FeatureChange:
    fields = set(spec.field_keys) if increment.new.height or increment.orphaned.height else set()
    for stale in (
        increment.stale.get_column(mx.columns.STALE_FIELDS).to_list()
        if increment.stale.height
        else []
    ):
        fields.update(stale)
    key = list(spec.parent_key)
    frames = [increment.new.select(key), increment.stale.select(key)]
    if key == list(spec.id_columns):
        frames.append(increment.orphaned.select(key))
    ids = pl.concat([f for f in frames if f.height] or frames[:1], how="vertical_relaxed").unique()
    return FeatureChange(ids, frozenset(fields))


def collect_changes(
    store: mx.MetadataStore,
    sources: Mapping[mx.FeatureKey, SourceFn],
    features: Sequence[mx.FeatureKey],
    *,
    exclude: pl.DataFrame | None,
) -> Changes:
    """Resolve every feature (roots from their sources) and keep what is not in `exclude`."""
    graph = store.graph
    anchor: mx.FeatureKey | None = None
    keyed: dict[mx.FeatureKey, FeatureChange] = {}
    unkeyed: dict[mx.FeatureKey, FeatureChange] = {}
    for key in graph.topological_order():
        spec = graph.spec(key)
        if key not in features or (spec.is_root and key not in sources):
            continue
        increment = store.resolve_update(key, samples=sources[key]() if spec.is_root else None)
        if increment.is_empty:
            continue
        change = _feature_change(spec, increment)
        anchor = anchor or key
        if set(graph.spec(anchor).id_columns) != set(change.ids.columns):
            unkeyed[key] = change
            continue
        if (
            exclude is not None
            and exclude.height
            and set(exclude.columns) == set(change.ids.columns)
        ):
            ids = change.ids.join(exclude.cast(change.ids.schema), on=exclude.columns, how="anti")
            change = FeatureChange(ids, change.fields)
        if change.ids.height:
            keyed[key] = change
    return Changes(graph, tuple(features), anchor, keyed, unkeyed)


@dataclass(frozen=True)
class OpenBatches:
    """Batches whose runs have not finished: how many, and their sample ids."""

    count: int
    ids: pl.DataFrame | None


def _pending(store: mx.MetadataStore) -> pl.DataFrame:
    return store.batches(status="pending").filter(pl.col("kind").is_in(BATCH_KINDS))


def open_batches(store: mx.MetadataStore) -> OpenBatches:
    """The pending batch manifests and the union of their sample ids."""
    keys = _pending(store)["batch_key"].to_list()
    if not keys:
        return OpenBatches(0, None)
    ids = pl.concat([store.batch_ids(k) for k in keys], how="vertical_relaxed").unique()
    return OpenBatches(len(keys), ids)


def reconcile_batches(
    instance: dg.DagsterInstance, store: mx.MetadataStore, partitions_name: str
) -> None:
    """Mark pending batches done or failed from their runs.

    A pending manifest whose partition was never added (the tick that wrote it did not
    complete) is marked `abandoned`, which frees its samples for a new batch.
    """
    for row in _pending(store).iter_rows(named=True):
        key = row["batch_key"]
        if not instance.has_dynamic_partition(partitions_name, key):
            store.set_batch_status(key, "abandoned")
            continue
        runs = instance.get_runs(
            dg.RunsFilter(tags={"dagster/partition": key}, created_after=row["updated_at"])
        )
        statuses = {run.status for run in runs}
        if dg.DagsterRunStatus.SUCCESS in statuses:
            store.set_batch_status(key, "done")
        elif statuses and statuses <= set(_FAILED):
            store.set_batch_status(key, "failed")
