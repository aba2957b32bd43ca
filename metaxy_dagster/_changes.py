"""What changed since the last runs: changed sample ids and fields per feature; open batches."""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import dagster as dg
import polars as pl

import metaxy_core as mx
from metaxy_dagster._io_manager import SourceFn
from metaxy_dagster._metadata import feature_asset_key
from metaxy_dagster._partitions import MANUAL_KIND
from metaxy_dagster._retries import Held, without

BATCH_KINDS = ("batch", "sample", MANUAL_KIND)
_FAILED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)

# Features keyed otherwise than a batch run once, not in each of several batch runs (a
# module-level switch so that a test can show what it protects).
SOLO_OTHER_KEYS = True
# Pending sample ids grouped by their key columns (batches can be keyed by different columns).
PendingIds = dict[frozenset[str], pl.DataFrame]
# The samples of an increment a tick leaves out (quarantined, waiting to retry, skipped).
HoldFn = Callable[[mx.Increment], Held | None]


@dataclass(frozen=True)
class FeatureChange:
    """The changed samples of one feature (keyed by its increment key) and the moving fields."""

    ids: pl.DataFrame
    fields: frozenset[str]

    @property
    def key_columns(self) -> frozenset[str]:
        return frozenset(self.ids.columns)


@dataclass(frozen=True)
class Changes:
    """Changed features of one tick and the sample ids to batch.

    `ids` are the not-yet-batched ids of every change keyed like the first such change
    (its increment key: the parent key for expansions); `anchor` is a feature whose id
    columns are those columns, recorded in the manifests. Features keyed by other columns
    (aggregations, expansion children) run without restricting their samples; `covered`
    are the changed features whose samples are all in open batches already or held back
    (`held`: quarantined, waiting to retry or skipped), or that wait for open batches
    feeding them. With `solo`, a batch's run leaves out the features keyed by other
    columns: runs in parallel would each redo their whole increment, so they run once, in
    a batch of their own, after the batches feeding them are done.
    """

    graph: mx.FeatureGraph
    features: Sequence[mx.FeatureKey]
    changes: dict[mx.FeatureKey, FeatureChange] = field(default_factory=dict)
    anchor: mx.FeatureKey | None = None
    ids: pl.DataFrame = field(default_factory=pl.DataFrame)
    covered: frozenset[mx.FeatureKey] = frozenset()
    held: tuple[Held, ...] = ()
    # Changed features some of whose samples wait: in an open batch, held back or quarantined.
    waiting: frozenset[mx.FeatureKey] = frozenset()
    # Changed features whose every changed sample is held back: no run needs them.
    fully_held: frozenset[mx.FeatureKey] = frozenset()
    # Set by `with_solo` (keyword only: collect_changes builds Changes positionally).
    solo: bool = field(default=False, kw_only=True)

    def describe_held(self) -> str:
        """What the tick left out and why, one feature per line ("" if nothing)."""
        return "\n".join(h.describe() for h in self.held)

    @property
    def is_empty(self) -> bool:
        """No sample left to batch (every change is already in an open batch, or none)."""
        return self.anchor is None

    @property
    def unbatchable(self) -> list[mx.FeatureKey]:
        """Changed features left out of every batch: no feature is keyed by their columns."""
        return [k for k in self.changes if k not in self.covered] if self.anchor is None else []

    def selection_for(self, ids: pl.DataFrame | None) -> list[mx.FeatureKey]:
        """Features to run for the samples `ids` (all changes when None), in topological order.

        These are the changed features sharing a sample with `ids`, those keyed otherwise
        (run unrestricted) unless all their samples are already in open batches, and those
        reading a changed field, transitively.
        """
        touched = {k: c for k, c in self.changes.items() if self._touches(k, c, ids)}
        selected = set(touched)
        for key, change in touched.items():
            for f in change.fields:
                selected.update(k for k, _ in self.graph.field_downstream(key, f))
        if self.solo and ids is not None:
            selected = {k for k in selected if restrictable(self.graph, k, ids)}
        return [k for k in self.graph.topological_order() if k in selected and k in self.features]

    def with_solo(self) -> "Changes":
        """These changes, with features keyed otherwise left out of each batch's run."""
        return replace(self, solo=SOLO_OTHER_KEYS)

    def _touches(self, key: mx.FeatureKey, change: FeatureChange, ids: pl.DataFrame | None) -> bool:
        if ids is None:
            return key not in self.fully_held
        if change.key_columns != set(ids.columns):
            return key not in self.covered
        return bool(change.ids.join(ids.cast(change.ids.schema), on=ids.columns, how="semi").height)


def restrictable(graph: mx.FeatureGraph, key: mx.FeatureKey, ids: pl.DataFrame) -> bool:
    """Whether a batch of `ids` restricts the feature's increment (it is keyed by their columns)."""
    return set(graph.spec(key).parent_key) == set(ids.columns)


def _ancestors(graph: mx.FeatureGraph, key: mx.FeatureKey) -> set[mx.FeatureKey]:
    found: set[mx.FeatureKey] = set()
    todo = [d.feature for d in graph.spec(key).deps]
    while todo:
        parent = todo.pop()
        if parent not in found:
            found.add(parent)
            todo.extend(d.feature for d in graph.spec(parent).deps)
    return found


def _waits_for_upstream(
    graph: mx.FeatureGraph, key: mx.FeatureKey, columns: frozenset[str], pending: PendingIds | None
) -> bool:
    """True while an open batch keyed by other columns may still change the feature's inputs.

    An aggregation over samples that open batches are computing would otherwise get a batch
    of its own now, and again after each of them.
    """
    others = {cols for cols, ids in (pending or {}).items() if cols != columns and ids.height}
    return bool(others) and any(
        frozenset(graph.spec(a).id_columns) in others for a in _ancestors(graph, key)
    )


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


def _not_pending(ids: pl.DataFrame, pending: PendingIds | None) -> pl.DataFrame:
    """`ids` without those already in an open batch keyed by the same columns."""
    open_ids = (pending or {}).get(frozenset(ids.columns))
    if open_ids is None or not ids.height:
        return ids
    return ids.join(open_ids.cast(ids.schema), on=ids.columns, how="anti")


def _manifest_feature(
    graph: mx.FeatureGraph, key: mx.FeatureKey, columns: frozenset[str]
) -> mx.FeatureKey | None:
    """A feature whose id columns are `columns` (an expansion's parent), to record manifests."""
    for candidate in (key, *graph.topological_order()):
        if set(graph.spec(candidate).id_columns) == columns:
            return candidate
    return None


def collect_changes(
    store: mx.MetadataStore,
    sources: Mapping[mx.FeatureKey, SourceFn],
    features: Sequence[mx.FeatureKey],
    *,
    exclude: PendingIds | None,
    hold: HoldFn | None = None,
    resolve: Callable[[mx.MetadataStore, mx.FeatureKey], mx.Increment] | None = None,
) -> Changes:
    """Resolve every feature (roots from their sources); batch what is not in `exclude`.

    Samples `hold` returns for a feature's increment are left out of that feature's change.
    `resolve` (default: `resolve_update`, roots listing their source) resolves one feature.
    """
    graph = store.graph
    changes: dict[mx.FeatureKey, FeatureChange] = {}
    anchor: mx.FeatureKey | None = None
    fresh: list[pl.DataFrame] = []
    covered: set[mx.FeatureKey] = set()
    holds: list[Held] = []
    waiting: set[mx.FeatureKey] = set()
    fully_held: set[mx.FeatureKey] = set()
    for key in graph.topological_order():
        spec = graph.spec(key)
        if key not in features or (spec.is_root and key not in sources):
            continue
        if resolve is not None:
            increment = resolve(store, key)
        else:
            increment = store.resolve_update(key, samples=sources[key]() if spec.is_root else None)
        if increment.is_empty:
            continue
        change = _feature_change(spec, increment)
        held = hold(increment) if hold is not None else None
        if held is not None:
            holds.append(held)
            waiting.add(key)
            kept = without(change.ids, held.ids)
            if change.ids.height and not kept.height:
                fully_held.add(key)
            change = FeatureChange(kept, change.fields)
        changes[key] = change
        ids = _not_pending(change.ids, exclude)
        waits = SOLO_OTHER_KEYS and _waits_for_upstream(graph, key, change.key_columns, exclude)
        if ids.height < change.ids.height or waits:
            waiting.add(key)
        if not ids.height or waits:
            covered.add(key)
            continue
        if anchor is None:
            anchor = _manifest_feature(graph, key, change.key_columns)
        columns = graph.spec(anchor).id_columns if anchor is not None else ()
        if change.key_columns == set(columns):
            fresh.append(ids.select(columns))
    batched = pl.concat(fresh, how="vertical_relaxed").unique() if fresh else pl.DataFrame()
    return Changes(
        graph,
        tuple(features),
        changes,
        anchor,
        batched,
        frozenset(covered),
        tuple(holds),
        frozenset(waiting),
        frozenset(fully_held),
    )


@dataclass(frozen=True)
class OpenBatches:
    """Batches whose runs have not finished: how many, and their sample ids by key columns."""

    count: int
    ids: PendingIds


def _pending(store: mx.MetadataStore) -> pl.DataFrame:
    return store.batches(status="pending").filter(pl.col("kind").is_in(BATCH_KINDS))


def open_batches(store: mx.MetadataStore) -> OpenBatches:
    """The pending batch manifests and the union of their sample ids per key columns."""
    keys = _pending(store)["batch_key"].to_list()
    grouped: dict[frozenset[str], list[pl.DataFrame]] = {}
    for key in keys:
        ids = store.batch_ids(key)
        grouped.setdefault(frozenset(ids.columns), []).append(ids.select(sorted(ids.columns)))
    ids = {
        cols: pl.concat(frames, how="vertical_relaxed").unique() for cols, frames in grouped.items()
    }
    return OpenBatches(len(keys), ids)


def reconcile_batches(
    instance: dg.DagsterInstance, store: mx.MetadataStore, partitions_name: str
) -> list[dict]:
    """Mark pending batches done or failed from their runs; return those that have no run.

    A pending manifest whose partition was never added (the tick that wrote it did not
    complete) is marked `abandoned`, which frees its samples for a new batch. A pending
    batch with a partition but no run (its run request was lost) is returned, to re-send.
    """
    runless = []
    for row in _pending(store).iter_rows(named=True):
        key = row["batch_key"]
        if not instance.has_dynamic_partition(partitions_name, key):
            store.set_batch_status(key, "abandoned")
            continue
        # A manual manifest is written by its run, after the run was created.
        after = None if row["kind"] == MANUAL_KIND else row["updated_at"]
        runs = instance.get_runs(
            dg.RunsFilter(tags={"dagster/partition": key}, created_after=after)
        )
        statuses = {run.status for run in runs}
        if not statuses:
            runless.append(row)
        elif dg.DagsterRunStatus.SUCCESS in statuses:
            store.set_batch_status(key, "partial" if _left_out(store, runs, key) else "done")
        elif statuses <= set(_FAILED):
            store.set_batch_status(key, "failed")
    return runless


def _left_out(store: mx.MetadataStore, runs: Sequence[dg.DagsterRun], batch_key: str) -> bool:
    """True if a run of the batch left some of its samples out (a failed attempt recorded)."""
    graph = store.graph
    assets = {a for run in runs for a in (run.asset_selection or ())}
    features = [k for k in graph.keys if feature_asset_key(k) in assets]
    for feature in features:
        failed = store.sample_attempts(feature, status="failed")
        if bool(failed["batch_key"].str.split(",").list.contains(batch_key).any()):
            return True
    return False
