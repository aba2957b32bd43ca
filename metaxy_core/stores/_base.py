"""The versioning logic of every store, written once on the storage primitives of `_storage`.

The work behind the public methods lives next door: `_resolve` (increments), `_rows`
(stamping a write's rows), `_system_tables` (settings, snapshots, batch manifests) and
`_attempts` (failed attempts, quarantine and skips: its methods are inherited).
Those modules read the store through the `StoreReads` protocol and never import it back.
"""

import dataclasses
import json
import logging
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Self

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._definition import FeatureDefinition
from metaxy_core._errors import (
    HashSettingsMismatchError,
    MetaxyError,
    SpecError,
    StoreError,
    WriteValidationError,
)
from metaxy_core._evolution import GraphChanges, refuse_breaking_changes
from metaxy_core._filters import parse_filters
from metaxy_core._graph import FeatureGraph
from metaxy_core._guard import guard_public_methods, guarded, store_error
from metaxy_core._increments import Increment
from metaxy_core._keys import FeatureKey
from metaxy_core.stores import _incremental, _rows, _system_tables
from metaxy_core.stores import _writes as W
from metaxy_core.stores._attempts import AttemptLog
from metaxy_core.stores._audit import AUDIT_TABLE, audit_records, audit_row, current_actor
from metaxy_core.stores._incremental import ChangeDetection
from metaxy_core.stores._system_tables import BATCHES_TABLE, SETTINGS_TABLE, SNAPSHOTS_TABLE
from metaxy_core.versioning._engine import apply_filters
from metaxy_core.versioning._hashing import HashSettings

_log = logging.getLogger("metaxy")


class MetadataStore(AttemptLog, ChangeDetection):
    """Append-only metadata for the features of one graph.

    Subclasses implement the storage primitives of `Storage` (`_exists`, `_scan`,
    `_append`, `_hard_delete`, optionally `_scan_latest`, `_create_if_absent`, `_locked`,
    `_close`) and set an `engine`; versioning, validation and increments are built on
    them here, once, for every backend.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        guard_public_methods(cls, store_error)  # a store's public methods raise MetaxyErrors only

    def __init__(self, graph: FeatureGraph, *, hash_settings: HashSettings | None = None) -> None:
        if not isinstance(graph, FeatureGraph):
            raise StoreError(f"A store needs a FeatureGraph, got {type(graph).__name__}.")
        self._graph = graph
        self._is_open = False
        self._recorded_snapshot: str | None = None
        self.graph_changes = GraphChanges()
        self._requested_settings = hash_settings
        self.hash_settings = hash_settings or HashSettings()

    @property
    def graph(self) -> FeatureGraph:
        """The feature graph; assigning a new one checks it against what the store holds.

        The check compares with the last recorded graph snapshot (writes record one when
        the definitions changed) and the stored tables: changed id columns or retyped
        columns of a written feature raise `GraphError`; everything else is accepted and
        listed in `graph_changes`.
        """
        return self._graph

    @graph.setter
    def graph(self, graph: FeatureGraph) -> None:
        if not isinstance(graph, FeatureGraph):
            raise StoreError(f"store.graph must be a FeatureGraph, got {type(graph).__name__}.")
        if self._is_open:  # a property is not guarded like the methods: check through one
            self.graph_changes = guarded(type(self)._check_graph, store_error)(
                self, graph, fallback=self._graph
            )
        self._graph = graph

    # -- lifecycle ---------------------------------------------------------------------------

    def _open(self) -> None:
        """Adopt or check the hash settings recorded in the store (call from `__init__`).

        Then check the graph against what the store holds (see `graph`).
        """
        if self._exists(SETTINGS_TABLE):
            recorded = self._scan(SETTINGS_TABLE).collect(backend="polars").to_native()
            self.hash_settings = _system_tables.adopt_settings(recorded, self._requested_settings)
            self._settings_checked = True
        self.graph_changes = self._check_graph(self._graph, fallback=None)
        self._is_open = True

    def _check_graph(self, graph: FeatureGraph, *, fallback: FeatureGraph | None) -> GraphChanges:
        """Refuse edits the stored rows cannot follow; list the others.

        Compared with the last recorded snapshot, else with `fallback` (the graph replaced).
        """
        recorded = self._last_snapshot()
        previous = fallback
        if recorded is not None:
            try:
                previous = FeatureGraph.from_snapshot(recorded)
            except MetaxyError:  # a snapshot this version cannot read: compare what we can
                _log.warning("The store's last graph snapshot is unreadable; not compared.")
        stored = {
            key: self._stored_schema(key.table_name)
            for key in graph.keys
            if self._exists(key.table_name)
        }
        refuse_breaking_changes(graph, previous, stored)
        changes = GraphChanges.between(previous, graph) if previous is not None else GraphChanges()
        if changes:
            _log.info("Feature graph changed since the store last saw it:\n%s", changes.describe())
        return changes

    def _stored_schema(self, table: str) -> dict[str, pl.DataType]:
        """The column types the table's rows have, as polars reads them back."""
        empty = self._scan(table).head(0).collect(backend="polars").to_native()
        return dict(self._restore_types(table, empty).schema)

    def _last_snapshot(self) -> str | None:
        """The JSON text of the last recorded graph snapshot (None if none was recorded)."""
        if self._recorded_snapshot is None and self._exists(SNAPSHOTS_TABLE):
            snapshots = self.graph_snapshots()
            if snapshots.height:
                self._recorded_snapshot = snapshots["snapshot"][-1]
        return self._recorded_snapshot

    def _record_snapshot(self) -> None:
        """Record the graph's definitions before a write, if they changed since the last one.

        Checked once per graph object: writes of an unchanged graph skip the snapshot work.
        """
        if self._snapshot_graph is self.graph:
            return
        snapshot = self.graph.snapshot()
        text = json.dumps(snapshot, sort_keys=True)
        if self._last_snapshot() != text:
            self._append(
                SNAPSHOTS_TABLE, _system_tables.snapshot_row(snapshot, {"recorded_by": "write"})
            )
            self._recorded_snapshot = text
        self._snapshot_graph = self.graph

    # The graph whose snapshot `_record_snapshot` last made sure of.
    _snapshot_graph: FeatureGraph | None = None

    # True once the settings recorded in the store are known to be this store's.
    _settings_checked: bool = False

    def _record_settings(self) -> None:
        """Record the hash settings at the first write, then check that they are the ones kept.

        Writers that opened an empty store with different settings race to record theirs:
        only the first creation of the settings table wins, and the others' rows (hashed
        with their settings) are refused instead of reading as stale forever.

        Raises:
            HashSettingsMismatchError: another writer recorded other settings first.
        """
        if self._settings_checked:
            return
        if not self._exists(SETTINGS_TABLE):
            self._create_if_absent(SETTINGS_TABLE, _system_tables.settings_row(self.hash_settings))
        if _system_tables.CHECK_RECORDED_SETTINGS:
            recorded = self._scan(SETTINGS_TABLE).collect(backend="polars").to_native()
            _system_tables.check_recorded_settings(recorded, self.hash_settings)
        self._settings_checked = True

    def close(self) -> None:
        """Close the store."""
        self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
    ) -> None:
        self.close()

    # -- reads -------------------------------------------------------------------------------

    def _id_columns(self, table: str) -> list[str] | None:
        """The id columns of the feature stored in `table` (None for system tables)."""
        for key in self.graph.keys:
            if key.table_name == table:
                return list(self.graph.spec(key).id_columns)
        return None

    def _table(self, feature: Any) -> tuple[FeatureKey, str]:
        spec = self.graph.spec(feature)
        return spec.key, spec.key.table_name

    def has_feature(self, feature: Any) -> bool:
        """True if the feature was ever written to this store."""
        return self._exists(self._table(feature)[1])

    def latest(self, feature: Any, *, include_deleted: bool = False) -> nw.LazyFrame[Any] | None:
        """The latest row per sample, lazily in the store's engine (None if never written)."""
        key, table = self._table(feature)
        if not self._exists(table):
            return None
        ids = self.graph.spec(key).id_columns
        return self._scan_latest(table, ids) if include_deleted else self._scan_live(table, ids)

    def read(
        self,
        feature: Any,
        *,
        columns: Sequence[str] | None = None,
        filters: Sequence[str] | str = (),
        include_deleted: bool = False,
    ) -> pl.DataFrame:
        """The latest live row per sample as a polars frame, sorted by id.

        Args:
            feature: key, spec or class.
            columns: keep only these columns (id columns are always kept).
            filters: conditions in the filter language on the stored columns (see the
                README), e.g. `["duration > 5", "lang IN ('en', 'fr')"]`; all must hold.
            include_deleted: also return soft-deleted samples.

        Raises:
            SpecError: a filter does not parse, uses something outside the filter
                language, or names a column the feature does not have.
        """
        key = self.graph.spec(feature).key
        ids = list(self.graph.spec(key).id_columns)
        parsed = parse_filters(filters)
        frame = self.latest(key, include_deleted=include_deleted)
        if frame is None:
            return self._empty(key)
        frame = self._with_declared_columns(key, frame)
        frame = apply_filters(self.engine, frame, parsed, where=f"read of {key}")
        if columns is not None:
            if isinstance(columns, str):
                columns = [columns]
            unknown = [c for c in columns if c not in frame.columns]
            if unknown:
                known = [c for c in frame.columns if c not in ids]
                raise SpecError(f"Read of {key}: unknown column(s) {unknown}; known: {known}.")
            frame = frame.select(*ids, *(c for c in columns if c not in ids))
        rows = frame.sort(*ids).collect(backend="polars").to_native()
        return self._restore_types(key.table_name, rows)

    def _with_declared_columns(
        self, key: FeatureKey, frame: nw.LazyFrame[Any]
    ) -> nw.LazyFrame[Any]:
        """Columns declared after the rows were written read as null, typed as declared."""
        present = set(frame.columns)
        missing = {c: t for c, t in self.graph.definition(key).columns.items() if c not in present}
        if not missing:
            return frame
        nulls = self.engine.lazy(pl.DataFrame(schema=missing).clear(1))
        return frame.join(nulls, how="cross")

    def history(self, feature: Any) -> pl.DataFrame:
        """Every row ever written for the feature, oldest first."""
        key, table = self._table(feature)
        if not self._exists(table):
            return self._empty(key)
        ids = list(self.graph.spec(key).id_columns)
        rows = self._scan(table).sort(C.WRITE_ID, *ids).collect(backend="polars").to_native()
        return self._restore_types(table, rows)

    def _empty(self, key: FeatureKey) -> pl.DataFrame:
        return pl.DataFrame(schema=dict(self.graph.definition(key).columns))

    # -- increments --------------------------------------------------------------------------

    def resolve_update(
        self,
        feature: Any,
        *,
        samples: Any = None,
        filters: Sequence[str] | str = (),
        full: bool = False,
        partial: bool = False,
    ) -> Increment:
        """Which samples of `feature` are new, stale (and why) or orphaned.

        Non-root features resolve from their watermark: only samples touched by writes
        since the last resolve (and those it left to do) are compared, unless there is no
        usable watermark (see the README's "Change detection"); `resolved_by` says which.

        Args:
            feature: key, spec or class.
            samples: for root features, the id columns plus one input version column per
                field (a content hash, mtime or etag), named after the field.
            filters: conditions in the filter language restricting which samples of the
                feature are considered; they read the increment's columns (ids, carried
                upstream columns).
            full: compare every sample (the full diff), ignoring the watermark.
            partial: for a root, `samples` lists only some samples (e.g. those a change
                feed reported): the others are left as they are and none is orphaned.

        Returns:
            An `Increment`; empty with status `upstream_missing` if a required upstream was
            never written.

        Raises:
            WriteValidationError: if a root is resolved without valid `samples`.
        """
        parsed = parse_filters(filters)
        increment = _incremental.resolve(
            self._log_access(), feature, samples, parsed, full=full, partial=partial
        )
        return dataclasses.replace(increment, source=self)  # for `Increment.upstream`

    # -- writes ------------------------------------------------------------------------------

    def write(self, feature: Any, rows: Any, *, materialization_id: str | None = None) -> int:
        """Append rows for `feature`; returns how many were written.

        Rows carry the id columns, user columns and the provenance columns from the
        increment (for non-root features they are computed if absent). Optional
        `metaxy_data_version__<field>` columns override data versions: an override holding
        `|` is stored as the hash of `override:` and its text, so it cannot imitate the
        parts of a hash input; any other override is stored as written.

        Raises:
            UnknownFeatureError: the feature is not in the graph.
            WriteValidationError: missing/null/duplicate ids, wrong dtypes (also against what
                the table already stores), unknown columns, missing provenance on a root.
                Nothing is written.

        For expansion features, a write holds the complete set of children of each parent it
        names: children written before and missing now get deletion markers.
        """
        key = self.graph.spec(feature).key
        with self._locked(key.table_name):  # stamping reads the latest rows the append follows
            stamped = self.prepare_rows(key, rows, materialization_id=materialization_id)
            if stamped.height:
                stamped = self._match_stored_types(key, stamped)
                dropped = _rows.dropped_children(self, key, stamped)
                self._record_settings()
                self._record_snapshot()
                batch = (
                    stamped
                    if dropped is None
                    else pl.concat([stamped, dropped], how="diagonal_relaxed")
                )
                self._append(key.table_name, batch)
        return stamped.height

    def _match_stored_types(self, key: FeatureKey, rows: pl.DataFrame) -> pl.DataFrame:
        """Cast rows to the types the table stores, or refuse a write that would change them."""
        stored = self._stored_schema(key.table_name) if self._exists(key.table_name) else {}
        return W.storable(rows, stored, what=f"Write to {key}")

    def prepare_rows(
        self, feature: Any, rows: Any, *, materialization_id: str | None = None
    ) -> pl.DataFrame:
        """Validate and stamp rows with every system column, without writing them."""
        return _rows.prepare_rows(self, feature, rows, materialization_id=materialization_id)

    # -- deletes -----------------------------------------------------------------------------

    def delete(
        self, feature: Any, ids: Any, *, hard: bool = False, materialization_id: str | None = None
    ) -> int:
        """Delete samples: soft appends marker rows (a re-write revives), hard removes rows.

        Args:
            feature: key, spec or class.
            ids: a frame holding (at least) the id columns of the samples to delete.
            hard: physically remove every row of those samples, history included.
            materialization_id: stamped on soft-delete markers (e.g. the Dagster run id).

        Returns:
            How many live samples were deleted (soft), or how many samples had rows that
            were removed (hard).
        """
        key, table = self._table(feature)
        spec = self.graph.spec(key)
        what = f"Delete from {key}"
        frame = W.to_polars(ids, what=what)
        missing = [c for c in spec.id_columns if c not in frame.columns]
        if missing:
            raise WriteValidationError(
                f"{what}: the ids frame lacks id column(s) {missing}; got {frame.columns}."
            )
        frame = frame.select(spec.id_columns).unique()
        if frame.null_count().sum_horizontal().item():
            raise WriteValidationError(f"{what}: id columns hold nulls; name samples by ids.")
        id_types = {c: self.graph.definition(key).columns[c] for c in spec.id_columns}
        frame = W.coerce_columns(frame, FeatureDefinition(spec, id_types), what=what)
        if not self._exists(table) or frame.is_empty():
            return 0
        if hard:
            id_columns = list(spec.id_columns)
            present = (
                self._scan(table)
                .select(*id_columns)
                .unique()
                .join(self.engine.lazy(frame), on=id_columns, how="semi")
                .collect(backend="polars")
            )
            self._hard_delete(table, frame)
            self._log_access().marks.forget(self.graph, [key])  # rows vanished from the log
            return len(present)
        with self._locked(table):  # markers copy the latest rows: none may land in between
            latest = self.latest(key)
            assert latest is not None
            rows = (
                latest.join(self.engine.lazy(frame), on=list(spec.id_columns), how="semi")
                .collect(backend="polars")
                .to_native()
            )
            if rows.is_empty():
                return 0
            rows = _rows.deletion_markers(rows, materialization_id=materialization_id)
            self._append(table, rows)
        return rows.height

    # -- system tables -------------------------------------------------------------------------

    def push_graph_snapshot(self, *, tags: dict[str, str] | None = None) -> str:
        """Record the graph's definitions (tagged e.g. with a git commit); return its version."""
        snapshot = self.graph.snapshot()
        self._append(SNAPSHOTS_TABLE, _system_tables.snapshot_row(snapshot, tags))
        self._recorded_snapshot = json.dumps(snapshot, sort_keys=True)
        return snapshot["project_version"]

    def graph_snapshots(self) -> pl.DataFrame:
        """Every pushed snapshot, oldest first."""
        return _system_tables.snapshots(self._scan_system(SNAPSHOTS_TABLE))

    def record_audit(
        self,
        audit_id: str,
        *,
        kind: str,
        feature: Any,
        reason: str,
        rows: int,
        details: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> None:
        """Append an audit record of an operation outside runs (an accept, a delete).

        `audit_id` is also the `materialization_id` of the rows the operation wrote.
        """
        key = self.graph.spec(feature).key
        who = actor or current_actor()
        row = audit_row(
            audit_id,
            kind,
            feature=key.path,
            reason=reason,
            actor=who,
            rows=rows,
            project_version=self.graph.project_version,
            details=details or {},
        )
        self._append(AUDIT_TABLE, row)

    def audit_log(self) -> pl.DataFrame:
        """Every audit record (who, when, why, which graph version, how many rows), oldest first."""
        return audit_records(self._scan_system(AUDIT_TABLE))

    def write_batch(
        self, batch_key: str, feature: Any, sample_ids: Any, *, kind: str, status: str = "pending"
    ) -> None:
        """Record a batch manifest: the exact sample ids a Dagster partition stands for."""
        row = _system_tables.batch_row(
            self.graph, batch_key, feature, sample_ids, kind=kind, status=status
        )
        self._append(BATCHES_TABLE, row)

    def set_batch_status(self, batch_key: str, status: str) -> None:
        """Append a status change for a batch (the latest status wins)."""
        current = self.read_batch(batch_key)
        self._append(BATCHES_TABLE, _system_tables.status_row(current, status))

    def batches(self, *, status: str | None = None) -> pl.DataFrame:
        """The latest state of every batch manifest, oldest first."""
        rows = self._scan_system(BATCHES_TABLE)
        return _system_tables.latest_batches(self.engine, rows, status)

    def read_batch(self, batch_key: str) -> dict[str, Any]:
        """One batch manifest as a dict (`sample_ids` decoded with `batch_ids`)."""
        rows = self.batches().filter(pl.col("batch_key") == batch_key)
        if rows.is_empty():
            raise StoreError(f"No batch manifest {batch_key!r} in this store.")
        return rows.row(0, named=True)

    def batch_ids(self, batch_key: str) -> pl.DataFrame:
        """The sample ids of a batch, typed like the feature's id columns."""
        return _system_tables.decode_ids(self.graph, self.read_batch(batch_key))

    def _scan_system(self, table: str) -> nw.LazyFrame[Any] | None:
        return self._scan(table) if self._exists(table) else None

    # -- copies --------------------------------------------------------------------------------

    def copy_to(
        self,
        other: "MetadataStore",
        *,
        features: Iterable[Any] | None = None,
        filters: Sequence[str] | str = (),
    ) -> dict[str, int]:
        """Copy the full history of features into `other` (e.g. production Delta to local DuckDB).

        Args:
            other: the target store (same hash settings).
            features: which features (default: all that were written).
            filters: conditions in the filter language choosing samples by their latest
                row; the whole history of each chosen sample is copied.

        Returns:
            Rows copied per feature key.

        Raises:
            HashSettingsMismatchError: the stores hash rows differently.
        """
        if other.hash_settings != self.hash_settings:
            raise HashSettingsMismatchError(
                "Cannot copy between stores with hash settings "
                f"{self.hash_settings.describe()} and {other.hash_settings.describe()}."
            )
        parsed = parse_filters(filters)
        copied: dict[str, int] = {}
        for key in (
            [self.graph.spec(f).key for f in features] if features is not None else self.graph.keys
        ):
            if not self.has_feature(key):
                continue
            frame = self._scan(key.table_name)
            if parsed:  # choose samples by what they are now, not by any past row
                ids = list(self.graph.spec(key).id_columns)
                chosen = self.latest(key, include_deleted=True)
                assert chosen is not None  # the feature was written
                chosen = apply_filters(self.engine, chosen, parsed, where=f"copy_to of {key}")
                frame = frame.join(chosen.select(*ids), on=ids, how="semi")
            rows = self._restore_types(key.table_name, frame.collect(backend="polars").to_native())
            if rows.height and other._exists(key.table_name):  # a repeated copy adds nothing
                seen = [*self.graph.spec(key).id_columns, C.WRITE_ID]
                present = (
                    other._scan(key.table_name).select(*seen).collect(backend="polars").to_native()
                )
                rows = rows.join(present, on=seen, how="anti")
            if rows.height:
                rows = other._match_stored_types(key, rows)
                other._record_settings()
                other._append(key.table_name, rows)
                other._log_access().marks.forget(other.graph, [key])  # older write ids came in
            copied[key.path] = rows.height
        return copied


guard_public_methods(MetadataStore, store_error)
