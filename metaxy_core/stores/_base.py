"""The store contract: a few storage primitives, and everything else built on them once.

The work behind the public methods lives next door: `_resolve` (increments), `_rows`
(stamping a write's rows) and `_system_tables` (settings, snapshots, batch manifests).
"""

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Self

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._errors import (
    HashSettingsMismatchError,
    StoreError,
    WriteValidationError,
)
from metaxy_core._graph import FeatureGraph
from metaxy_core._increments import Increment
from metaxy_core._keys import FeatureKey
from metaxy_core.stores import _rows, _system_tables
from metaxy_core.stores import _writes as W
from metaxy_core.stores._resolve import resolve_increment
from metaxy_core.stores._system_tables import BATCHES_TABLE, SETTINGS_TABLE, SNAPSHOTS_TABLE
from metaxy_core.versioning._engine import Engine
from metaxy_core.versioning._hashing import HashSettings


class MetadataStore(ABC):
    """Append-only metadata for the features of one graph.

    Subclasses supply storage primitives (`_exists`, `_scan`, `_append`, `_hard_delete`,
    `_close`, optionally `_scan_latest`) and an `engine`; versioning, validation and
    increments are built on them here, once, for every backend.
    """

    engine: Engine
    # True when `_scan_latest` reads a stored current view (no need to compute it once per
    # resolve); False when it derives the latest rows from the log.
    stores_current_view: bool = False

    def __init__(self, graph: FeatureGraph, *, hash_settings: HashSettings | None = None) -> None:
        self.graph = graph
        self._requested_settings = hash_settings
        self.hash_settings = hash_settings or HashSettings()

    # -- primitives --------------------------------------------------------------------------

    @abstractmethod
    def _exists(self, table: str) -> bool:
        """True if `table` was ever written."""

    @abstractmethod
    def _scan(self, table: str) -> nw.LazyFrame[Any]:
        """Every row of `table`, lazily, in the store's engine."""

    @abstractmethod
    def _append(self, table: str, rows: pl.DataFrame) -> None:
        """Append `rows` atomically, creating the table or adding new columns as needed."""

    @abstractmethod
    def _hard_delete(self, table: str, ids: pl.DataFrame) -> None:
        """Physically remove every row whose id columns match a row of `ids`."""

    def _close(self) -> None:  # noqa: B027 - optional hook: stores holding nothing skip it
        """Release resources."""

    def _scan_latest(self, table: str, ids: Sequence[str]) -> nw.LazyFrame[Any]:
        """The latest row per sample (soft-deleted included).

        Stores that keep a current view override this.
        """
        return self.engine.latest(self._scan(table), ids, C.WRITE_ID)

    # -- lifecycle ---------------------------------------------------------------------------

    def _open(self) -> None:
        """Adopt or check the hash settings recorded in the store (call from `__init__`)."""
        if self._exists(SETTINGS_TABLE):
            recorded = self._scan(SETTINGS_TABLE).collect(backend="polars").to_native()
            self.hash_settings = _system_tables.adopt_settings(recorded, self._requested_settings)

    def _record_settings(self) -> None:
        if not self._exists(SETTINGS_TABLE):
            self._append(SETTINGS_TABLE, _system_tables.settings_row(self.hash_settings))

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
        frame = self._scan_latest(table, self.graph.spec(key).id_columns)
        if not include_deleted:
            frame = frame.filter(nw.col(C.DELETED_AT).is_null())
        return frame

    def read(
        self,
        feature: Any,
        *,
        columns: Sequence[str] | None = None,
        filters: Sequence[str] = (),
        include_deleted: bool = False,
    ) -> pl.DataFrame:
        """The latest live row per sample as a polars frame, sorted by id.

        Args:
            feature: key, spec or class.
            columns: keep only these columns (id columns are always kept).
            filters: SQL predicates on the columns.
            include_deleted: also return soft-deleted samples.
        """
        key = self.graph.spec(feature).key
        ids = list(self.graph.spec(key).id_columns)
        frame = self.latest(key, include_deleted=include_deleted)
        if frame is None:
            return self._empty(key)
        for predicate in filters:
            frame = self.engine.filter_sql(frame, predicate)
        if columns is not None:
            frame = frame.select(*ids, *(c for c in columns if c not in ids))
        return frame.sort(*ids).collect(backend="polars").to_native()

    def history(self, feature: Any) -> pl.DataFrame:
        """Every row ever written for the feature, oldest first."""
        key, table = self._table(feature)
        if not self._exists(table):
            return self._empty(key)
        ids = list(self.graph.spec(key).id_columns)
        return self._scan(table).sort(C.WRITE_ID, *ids).collect(backend="polars").to_native()

    def _empty(self, key: FeatureKey) -> pl.DataFrame:
        return pl.DataFrame(schema=dict(self.graph.definition(key).columns))

    # -- increments --------------------------------------------------------------------------

    def resolve_update(
        self, feature: Any, *, samples: Any = None, filters: Sequence[str] = ()
    ) -> Increment:
        """Which samples of `feature` are new, stale (and why) or orphaned.

        Args:
            feature: key, spec or class.
            samples: for root features, the id columns plus one input version column per
                field (a content hash, mtime or etag), named after the field.
            filters: SQL predicates restricting which samples of the feature are considered.

        Returns:
            An `Increment`; empty with status `upstream_missing` if a required upstream was
            never written.

        Raises:
            WriteValidationError: if a root is resolved without valid `samples`.
        """
        return resolve_increment(self, feature, samples, filters)

    # -- writes ------------------------------------------------------------------------------

    def write(self, feature: Any, rows: Any, *, materialization_id: str | None = None) -> int:
        """Append rows for `feature`; returns how many were written.

        Rows carry the id columns, user columns and the provenance columns from the
        increment (for non-root features they are computed if absent). Optional
        `metaxy_data_version__<field>` columns override data versions.

        Raises:
            UnknownFeatureError: the feature is not in the graph.
            WriteValidationError: missing/null/duplicate ids, wrong dtypes (also against what
                the table already stores), unknown columns, missing provenance on a root.
                Nothing is written.

        For expansion features, a write holds the complete set of children of each parent it
        names: children written before and missing now get deletion markers.
        """
        key = self.graph.spec(feature).key
        stamped = self.prepare_rows(key, rows, materialization_id=materialization_id)
        if stamped.height:
            self._check_stored_dtypes(key, stamped)
            dropped = _rows.dropped_children(self, key, stamped)
            self._record_settings()
            batch = (
                stamped
                if dropped is None
                else pl.concat([stamped, dropped], how="diagonal_relaxed")
            )
            self._append(key.table_name, batch)
        return stamped.height

    def _check_stored_dtypes(self, key: FeatureKey, rows: pl.DataFrame) -> None:
        """Columns the table already holds keep their kind of type (Int stays Int)."""
        if not self._exists(key.table_name):
            return
        stored = self._scan(key.table_name).collect_schema()
        incoming = nw.from_native(rows).schema
        clashes = [
            f"{c!r} is {t} here but {stored[c]} in the store"
            for c, t in incoming.items()
            if c in stored
            and t != nw.Unknown
            and stored[c] != nw.Unknown
            and t.base_type() != stored[c].base_type()
        ]
        if clashes:
            raise WriteValidationError(
                f"Write to {key}: column types differ from the stored ones: {'; '.join(clashes)}."
            )

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
            How many live samples were deleted (soft) or samples matched (hard).
        """
        key, table = self._table(feature)
        spec = self.graph.spec(key)
        frame = W.to_polars(ids, what=f"Delete from {key}").select(spec.id_columns).unique()
        if not self._exists(table) or frame.is_empty():
            return 0
        if hard:
            self._hard_delete(table, frame)
            return frame.height
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
        return snapshot["project_version"]

    def graph_snapshots(self) -> pl.DataFrame:
        """Every pushed snapshot, oldest first."""
        return _system_tables.snapshots(self._scan_system(SNAPSHOTS_TABLE))

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
        filters: Sequence[str] = (),
    ) -> dict[str, int]:
        """Copy the full history of features into `other` (e.g. production Delta to local DuckDB).

        Args:
            other: the target store (same hash settings).
            features: which features (default: all that were written).
            filters: SQL predicates choosing samples by their latest row; the whole history
                of each chosen sample is copied.

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
        copied: dict[str, int] = {}
        for key in (
            [self.graph.spec(f).key for f in features] if features is not None else self.graph.keys
        ):
            if not self.has_feature(key):
                continue
            frame = self._scan(key.table_name)
            if filters:  # choose samples by what they are now, not by any past row
                ids = list(self.graph.spec(key).id_columns)
                chosen = self.latest(key, include_deleted=True)
                assert chosen is not None  # the feature was written
                for predicate in filters:
                    chosen = self.engine.filter_sql(chosen, predicate)
                frame = frame.join(chosen.select(*ids), on=ids, how="semi")
            rows = frame.collect(backend="polars").to_native()
            if rows.height and other._exists(key.table_name):  # a repeated copy adds nothing
                seen = [*self.graph.spec(key).id_columns, C.WRITE_ID]
                present = (
                    other._scan(key.table_name).select(*seen).collect(backend="polars").to_native()
                )
                rows = rows.join(present, on=seen, how="anti")
            if rows.height:
                other._record_settings()
                other._append(key.table_name, rows)
            copied[key.path] = rows.height
        return copied
