"""Increments whose cost follows the change: compare only samples touched since a watermark.

A resolve of a non-root feature reads the feature's mark (`_watermarks`): the log position
of its own table and of each upstream table when its last increment was found, and the
samples that increment left pending. Rows appended since name the touched samples (mapped
to the feature's increment key through the dep's rename and lineage; for an aggregation,
also the groups the touched members belonged to before). Expected provenance is derived for
the touched and pending samples only and compared with their stored rows: every other
sample was up to date at the mark and nothing it reads has changed since.

Without a usable mark (first resolve, changed definitions, a voided mark, too many pending
samples, a backend without log positions) the full diff runs and records a fresh mark.
`reconcile` compares the two paths and reports any disagreement.
"""

import dataclasses
import logging
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._errors import SpecError
from metaxy_core._filters import Filter
from metaxy_core._graph import FeatureGraph
from metaxy_core._guard import guard_public_methods, store_error
from metaxy_core._increments import Increment, IncrementStatus, diff, split_lists
from metaxy_core._keys import FeatureKey
from metaxy_core._one_pass_diff import diff_in_one_join
from metaxy_core._spec import FeatureDep, FeatureSpec
from metaxy_core.stores import _resolve
from metaxy_core.stores import _watermarks as watermarks
from metaxy_core.stores._resolve import (
    StoreReads,
    collect_increment,
    current_rows,
    expected_rows,
    resolve_increment,
)
from metaxy_core.stores._storage import Storage

_log = logging.getLogger("metaxy")

# What the watermark logic protects, as switches tests flip to show it (defaults are right).
# Samples left pending at the mark are compared again, even when nothing touched them.
RECHECK_PENDING = True
# A new mark takes the log positions read before the rows were read, never after: a write
# landing in between would otherwise count as seen without having been compared.
ADVANCE_PAST_UNSEEN = False
# A rewritten aggregation member also touches the groups it belonged to before.
FORMER_GROUPS = True
# Features whose input logs (own and upstream tables) hold fewer rows than this resolve by
# the full diff and keep no mark: at that size the diff takes a few milliseconds, about what
# reading and recording a mark costs (a Delta commit alone is ~5 ms). Tests of the
# watermark path set it to 0.
FULL_BELOW_ROWS = 50_000
# A resolve whose touched and pending samples exceed this share of its smallest upstream
# log (which holds at least one row per sample) takes the full path: comparing nearly every
# sample through the candidate joins cost about 4x the full diff (1M samples, all touched:
# 0.87 s against 0.22 s on memory, 0.97 s against 0.41 s on DuckDB). None: never (tests).
FULL_ABOVE_SHARE: float | None = 0.25
# Test seam: called after an increment's rows were read, before its mark is recorded (a
# concurrent writer lands here).
AFTER_READ: Callable[[], None] | None = None


# An increment with nothing in it, per (graph fingerprint, feature, store class): a quiet
# resolve returns it without building a query (frames of the right columns, no rows).
_EMPTY: dict[tuple[str, FeatureKey, str], Increment] = {}


def _remember_empty(fingerprint: str, store: Any, increment: Increment) -> Increment:
    key = (fingerprint, increment.feature, type(store).__name__)
    if key not in _EMPTY and increment.status is IncrementStatus.OK:
        _EMPTY[key] = Increment(
            increment.feature,
            increment.new.clear(),
            increment.stale.clear(),
            increment.orphaned.clear(),
        )
    return increment


def _empty(fingerprint: str, store: Any, feature: FeatureKey, by: str) -> Increment | None:
    known = _EMPTY.get((fingerprint, feature, type(store).__name__))
    return None if known is None else dataclasses.replace(known, resolved_by=by)


@dataclass(frozen=True)
class LogAccess:
    """What incremental resolution reads besides `StoreReads`: logs, positions and marks."""

    store: StoreReads
    log_position: Callable[[str], str | None]
    scan_since: Callable[[str, str], nw.LazyFrame[Any] | None]
    log_rows: Callable[[Sequence[str]], int | None]
    scan_log: Callable[[str], nw.LazyFrame[Any]]
    marks: watermarks.MarkTable


class ChangeDetection(Storage):
    """Store methods of incremental change detection, on every backend's primitives."""

    @property
    @abstractmethod
    def graph(self) -> FeatureGraph:
        """The feature graph."""

    def reconcile(self, features: Iterable[Any] | None = None) -> dict[str, str]:
        """Check incremental change detection against the full diff, feature by feature.

        Roots are skipped (their samples come from a source). A disagreement is logged
        as a warning and returned; the feature's watermark is then reset to the full
        answer.

        Args:
            features: keys, specs or classes; default every feature of the graph.

        Returns:
            What differed, by feature path (empty when every increment agreed).

        Example:
            >>> store.reconcile()  # doctest: +SKIP
            {}
        """
        keys = self.graph.keys if features is None else [self.graph.spec(f).key for f in features]
        return reconcile(self._log_access(), keys)

    def _log_access(self) -> LogAccess:
        marks = watermarks.MarkTable(
            exists=self._exists,
            scan=self._scan,
            append=self._append,
            engine=self.engine,
            writable=not getattr(self, "read_only", False),
        )
        reads = cast(StoreReads, self)  # a MetadataStore: the graph, latest rows and the rest
        return LogAccess(
            reads, self._log_position, self._scan_since, self._log_rows, self._scan, marks
        )


def resolve(
    log: LogAccess,
    feature: Any,
    samples: Any,
    filters: Sequence[Filter],
    *,
    full: bool,
    partial: bool,
) -> Increment:
    """The increment of `feature` (see `MetadataStore.resolve_update`)."""
    graph = log.store.graph
    spec = graph.spec(feature)
    fingerprint = watermarks.fingerprint(graph, log.store.hash_settings)
    store = log.store
    if spec.is_root:
        if partial and log.store.has_feature(spec.key):
            if not _has_rows(samples):
                quiet = _empty(fingerprint, store, spec.key, "changes")
                if quiet is not None:
                    return quiet
            return _remember_empty(fingerprint, store, _partial_root(log, spec, samples))
        return resolve_increment(log.store, spec.key, samples, filters)
    if partial:
        raise SpecError(f"partial= lists some samples of a root feature; {spec.key} is not one.")
    if filters:  # a filtered increment is a part: it leaves the mark as it is
        return resolve_increment(log.store, spec.key, None, filters)
    tables = watermarks.input_tables(graph, spec.key)
    if _small(log, tables):
        return resolve_increment(log.store, spec.key, None, filters)
    before = watermarks.positions(log.log_position, tables)
    if before is None:  # the backend keeps no log positions
        return resolve_increment(log.store, spec.key, None, filters)
    mark = log.marks.read(graph, spec.key)
    increment = None
    if not full and mark is not None and _usable(mark, fingerprint, tables):
        increment = _from_mark(log, spec, mark, before, fingerprint)
    # A feature never written has every sample pending: its next resolve is a full one.
    first = False
    if increment is None:
        first = not store.has_feature(spec.key)
        increment = resolve_increment(log.store, spec.key, None, filters)
    _remember_empty(fingerprint, store, increment)
    if increment.status is IncrementStatus.OK:
        if AFTER_READ is not None:
            AFTER_READ()
        seen = watermarks.positions(log.log_position, tables) if ADVANCE_PAST_UNSEEN else before
        assert seen is not None
        pending = None if first else _keys_of(spec, increment)
        log.marks.record(spec.key, watermarks.Mark(fingerprint, seen, pending), previous=mark)
    return increment


def _small(log: LogAccess, tables: list[str]) -> bool:
    """True if the input logs hold fewer than `FULL_BELOW_ROWS` rows in all."""
    if FULL_BELOW_ROWS <= 0:
        return False
    rows = log.log_rows(tables)
    return rows is not None and rows < FULL_BELOW_ROWS


def _has_rows(samples: Any) -> bool:
    """False for an empty frame of samples (a change source that reported nothing)."""
    height = getattr(samples, "height", None)
    if height is None:
        height = getattr(samples, "shape", (1,))[0]
    return bool(height)


def _usable(mark: watermarks.Mark, fingerprint: str, tables: list[str]) -> bool:
    return (
        mark.fingerprint == fingerprint
        and mark.pending is not None
        and set(mark.positions) == set(tables)
    )


def _from_mark(
    log: LogAccess,
    spec: FeatureSpec,
    mark: watermarks.Mark,
    now: dict[str, str],
    fingerprint: str,
) -> Increment | None:
    """The increment from the touched and pending samples (None: take the full path)."""
    touched: list[pl.DataFrame] = []
    for table, position in now.items():
        if position == mark.positions[table]:
            continue
        since = log.scan_since(table, mark.positions[table])
        if since is None:
            return None
        keys = _touched(log, spec, table, since)
        if keys is None:
            return None
        touched.append(keys)
    assert mark.pending is not None
    frames = ([mark.pending] if RECHECK_PENDING else []) + touched
    by = "changes" if touched else "watermark"
    if not any(f.height for f in frames):  # nothing touched, nothing pending: a lookup
        quiet = _empty(fingerprint, log.store, spec.key, by)
        if quiet is not None:
            return quiet
    candidates = pl.concat(
        [_typed(log, spec, f) for f in frames] or [_typed(log, spec, mark.pending.clear())],
        how="vertical",
    ).unique()
    if _mostly_touched(log, spec, candidates.height):
        return None
    increment = _compare(log, spec, candidates)
    return Increment(
        increment.feature, increment.new, increment.stale, increment.orphaned, resolved_by=by
    )


def _mostly_touched(log: LogAccess, spec: FeatureSpec, candidates: int) -> bool:
    """True if `candidates` samples are more than `FULL_ABOVE_SHARE` of the smallest upstream."""
    if FULL_ABOVE_SHARE is None:
        return False
    sizes = [log.log_rows([dep.feature.table_name]) for dep in spec.deps]
    written = [size for size in sizes if size]  # unknown, or an optional upstream never written
    return bool(written) and candidates > FULL_ABOVE_SHARE * min(written)


def _typed(log: LogAccess, spec: FeatureSpec, keys: pl.DataFrame) -> pl.DataFrame:
    """Increment-key columns in the feature's declared types (tables may store them alike)."""
    columns = log.store.graph.definition(spec.key).columns
    return keys.select(pl.col(c).cast(columns[c]) for c in spec.parent_key)


def _touched(
    log: LogAccess, spec: FeatureSpec, table: str, since: nw.LazyFrame[Any]
) -> pl.DataFrame | None:
    """The increment keys rows appended to `table` touch (None: they cannot be mapped)."""
    key = list(spec.parent_key)
    if table == spec.key.table_name:
        return since.select(*key).unique().collect(backend="polars").to_native()
    dep = next(d for d in spec.deps if d.feature.table_name == table)
    back = {new: old for old, new in dep.rename_map.items()}
    columns = [back.get(c, c) for c in key]
    if any(c not in since.columns for c in columns):
        return None
    rows = since.select(*columns)
    up_ids = list(log.store.graph.spec(dep.feature).id_columns)
    if dep.lineage.kind == "aggregation" and FORMER_GROUPS and not set(columns) <= set(up_ids):
        # The group is a column the member may change: its earlier groups lost a member.
        former = log.scan_log(table).join(since.select(*up_ids), on=up_ids, how="semi")
        rows = nw.concat([rows, former.select(*columns)])
    found = rows.unique().collect(backend="polars").to_native()
    return found.rename(dict(zip(columns, key, strict=True)))


def _restricted(
    log: LogAccess, frame: nw.LazyFrame[Any], keys: pl.DataFrame, columns: list[str]
) -> nw.LazyFrame[Any]:
    """`frame`'s rows whose `columns` hold one of `keys` (named like `columns`)."""
    schema = frame.collect_schema()
    ids = log.store.engine.lazy(keys.rename(dict(zip(keys.columns, columns, strict=True))))
    ids = ids.with_columns(nw.col(c).cast(schema[c]) for c in columns)
    return frame.join(ids, on=columns, how="semi")


def _compare(log: LogAccess, spec: FeatureSpec, candidates: pl.DataFrame) -> Increment:
    """New, stale and orphaned among `candidates` only (keys of the feature's increment)."""
    key = list(spec.parent_key)

    def only(dep: FeatureDep, frame: nw.LazyFrame[Any]) -> nw.LazyFrame[Any]:
        back = {new: old for old, new in dep.rename_map.items()}
        return _restricted(log, frame, candidates, [back.get(c, c) for c in key])

    one_join = spec.parent_key == spec.id_columns
    # As on the full path: the sample provenance is hashed for the rows the diff keeps only.
    late = one_join and _resolve.DEFER_SAMPLE_PROVENANCE
    expected = expected_rows(log.store, spec.key, None, only=only, sample=not late)
    assert expected is not None, "a usable mark means every required upstream was written"
    current = _restricted(log, current_rows(log.store, spec.key), candidates, key)
    if one_join:
        settings = log.store.hash_settings if late else None
        diffed = diff_in_one_join(spec, expected, current, log.store.engine, settings)
        return Increment(spec.key, *diffed)
    engine = log.store.engine
    try:
        expected = engine.cache(expected)
        current = engine.cache(current)
        return collect_increment(spec.key, *diff(spec, expected, current))
    finally:
        engine.release()


def _partial_root(log: LogAccess, spec: FeatureSpec, samples: Any) -> Increment:
    """A root's samples listed in part (e.g. what a change feed reported): nothing is orphaned."""
    expected = expected_rows(log.store, spec.key, samples)
    assert expected is not None, "roots have no upstreams"
    engine = log.store.engine
    try:
        expected = engine.cache(expected)
        current = current_rows(log.store, spec.key).join(
            expected.select(*spec.id_columns), on=list(spec.id_columns), how="semi"
        )
        new, stale, orphaned = diff(spec, expected, engine.cache(current))
        return Increment(
            spec.key,
            new.collect(backend="polars").to_native(),
            split_lists(stale.collect(backend="polars").to_native()),
            orphaned.head(0).collect(backend="polars").to_native(),
            resolved_by="changes",
        )
    finally:
        engine.release()


def _keys_of(spec: FeatureSpec, increment: Increment) -> pl.DataFrame | None:
    """The increment keys of the samples an increment leaves to do (None: too many to keep)."""
    key = list(spec.parent_key)
    frames = [
        increment.new.select(key),
        increment.stale.select(key),
        increment.orphaned.select(key),
    ]
    rows = sum(f.height for f in frames)
    if spec.parent_key == spec.id_columns and rows > watermarks.MAX_PENDING:
        return None  # one row per sample, so too many: no need to deduplicate them first
    return pl.concat(frames, how="vertical_relaxed").unique()


def reconcile(log: LogAccess, features: Sequence[FeatureKey]) -> dict[str, str]:
    """Compare incremental with full resolution; describe each disagreement by feature path.

    The full answer's mark is recorded afterwards, so later resolves start from it.
    """
    found: dict[str, str] = {}
    for key in features:
        spec = log.store.graph.spec(key)
        if spec.is_root:
            continue
        quick = resolve(log, key, None, (), full=False, partial=False)
        whole = resolve(log, key, None, (), full=True, partial=False)
        text = _disagreement(spec, quick, whole)
        if text:
            found[key.path] = text
            _log.warning(
                "Reconciliation of %s: the incremental increment (%s) disagreed with the full "
                "one: %s. Its watermark was reset to the full answer.",
                key,
                quick.resolved_by,
                text,
            )
    return found


def _disagreement(spec: FeatureSpec, quick: Increment, whole: Increment) -> str:
    if quick.status is not IncrementStatus.OK or whole.status is not IncrementStatus.OK:
        return "" if quick.status == whole.status else f"status {quick.status} vs {whole.status}"
    key = list(spec.parent_key)
    parts: list[str] = []
    for name, columns in (
        ("new", [*key, C.PROVENANCE]),
        ("stale", [*key, C.PROVENANCE]),
        ("orphaned", list(spec.id_columns)),
    ):
        mine: pl.DataFrame = getattr(quick, name).select(columns)
        truth: pl.DataFrame = getattr(whole, name).select(columns)
        if mine.is_empty() and truth.is_empty():
            continue
        mine = mine.cast(truth.schema) if not truth.is_empty() else mine
        truth = truth.cast(mine.schema)
        missed = truth.join(mine, on=columns, how="anti", nulls_equal=True).height
        extra = mine.join(truth, on=columns, how="anti", nulls_equal=True).height
        if missed or extra:
            parts.append(f"{name}: {missed} missed, {extra} extra")
    return "; ".join(parts)


guard_public_methods(ChangeDetection, store_error)
