"""The store contract: a few storage primitives, and everything else built on them once."""

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Self

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._errors import (
    HashSettingsMismatchError,
    SpecError,
    UnknownFeatureError,
    WriteValidationError,
)
from metaxy_core._graph import FeatureGraph
from metaxy_core._increments import Increment, diff, empty_increment, split_lists
from metaxy_core._keys import FeatureKey
from metaxy_core._spec import FeatureSpec
from metaxy_core.stores import _writes as W
from metaxy_core.versioning import feature_version
from metaxy_core.versioning._engine import Engine
from metaxy_core.versioning._hashing import HashSettings
from metaxy_core.versioning._polars_engine import PolarsEngine
from metaxy_core.versioning._provenance import (
    data_version_expr,
    expected_provenance,
    root_provenance,
)

SETTINGS_TABLE = "metaxy_system__settings"
SNAPSHOTS_TABLE = "metaxy_system__snapshots"
BATCHES_TABLE = "metaxy_system__batches"


class MetadataStore(ABC):
    """Append-only metadata for the features of one graph.

    Subclasses supply storage primitives (`_exists`, `_scan`, `_append`, `_hard_delete`,
    `_close`) and an `engine`; the versioning, validation and increments live here, once.
    """

    engine: Engine

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
        if not self._exists(SETTINGS_TABLE):
            return
        recorded = HashSettings.parse(
            self._scan(SETTINGS_TABLE).collect(backend="polars")["hash"].item(0)
        )
        if self._requested_settings is not None and recorded != self._requested_settings:
            raise HashSettingsMismatchError(
                f"This store was created with hash settings {recorded.describe()}, but "
                f"{self._requested_settings.describe()} were requested. Open it with "
                f"HashSettings({recorded.algorithm.value!r}, length={recorded.length}) or omit "
                "hash_settings to adopt the recorded ones; changing them would make every "
                "sample stale."
            )
        self.hash_settings = recorded

    def _record_settings(self) -> None:
        if not self._exists(SETTINGS_TABLE):
            self._append(SETTINGS_TABLE, pl.DataFrame({"hash": [self.hash_settings.describe()]}))

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
        spec = self.graph.spec(feature)
        expected = self._expected(spec.key, samples)
        if expected is None:
            missing = [
                d.feature for d in spec.deps if not d.optional and not self.has_feature(d.feature)
            ]
            return empty_increment(spec, missing)
        try:
            # new, stale and orphaned all read both sides: compute each side once.
            expected = self.engine.cache(expected)
            current = self.engine.cache(self._current(spec.key))
            new, stale, orphaned = diff(spec, self._filtered(spec, expected, filters), current)
            if filters:  # orphans have no upstream row: only predicates on ids can scope them
                _, _, orphaned = diff(spec, expected, current)
                for predicate in filters:
                    if set(_predicate_columns(predicate)) <= set(spec.id_columns):
                        orphaned = self.engine.filter_sql(orphaned, predicate)
            return Increment(
                spec.key,
                new.collect(backend="polars").to_native(),
                split_lists(stale.collect(backend="polars").to_native()),
                orphaned.collect(backend="polars").to_native(),
            )
        finally:
            self.engine.release()

    def _filtered(
        self, spec: FeatureSpec, expected: nw.LazyFrame[Any], filters: Sequence[str]
    ) -> nw.LazyFrame[Any]:
        """Apply target filters to the expected rows (key and carried upstream columns)."""
        available = set(expected.columns)
        for predicate in filters:
            unknown = sorted(set(_predicate_columns(predicate)) - available)
            if unknown:
                usable = sorted(c for c in available if not c.startswith(C.PREFIX))
                raise SpecError(
                    f"Filter {predicate!r} on {spec.key} names unknown column(s) {unknown}; "
                    f"filters see the increment's columns: {usable}."
                )
            expected = self.engine.filter_sql(expected, predicate)
        return expected

    def _expected(self, key: FeatureKey, samples: Any) -> nw.LazyFrame[Any] | None:
        spec = self.graph.spec(key)
        if spec.is_root:
            if samples is None:
                raise WriteValidationError(
                    f"Feature {key} is a root: pass samples= with its id columns and one input "
                    f"version column per field {list(spec.field_keys)}."
                )
            frame = W.to_polars(samples, what=f"samples for {key}")
            W.validate_ids(frame, spec.id_columns, what=f"samples for {key}")
            missing = [f for f in spec.field_keys if f not in frame.columns]
            if missing:
                raise WriteValidationError(
                    f"samples for {key}: missing input column(s) {missing} (one per field)."
                )
            lazy = self.engine.lazy(frame.select(*spec.id_columns, *spec.field_keys))
            return root_provenance(self.graph, key, lazy, self.engine, self.hash_settings)
        upstreams: dict[FeatureKey, nw.LazyFrame[Any]] = {}
        for dep in spec.deps:
            frame = self.latest(dep.feature)
            if frame is None:
                if not dep.optional:
                    return None
                frame = self.engine.lazy(self._empty_system(dep.feature))
            upstreams[dep.feature] = frame
        return expected_provenance(self.graph, key, upstreams, self.engine, self.hash_settings)

    def _empty_system(self, key: FeatureKey) -> pl.DataFrame:
        spec = self.graph.spec(key)
        schema = dict(self.graph.definition(key).columns)
        schema |= {C.data_version_column(f): pl.String() for f in spec.field_keys}
        return pl.DataFrame(schema=schema)

    def _current(self, key: FeatureKey) -> nw.LazyFrame[Any]:
        spec = self.graph.spec(key)
        frame = self.latest(key)
        columns = [
            *spec.id_columns,
            *(C.provenance_column(f) for f in spec.field_keys),
            *(C.code_version_column(f) for f in spec.field_keys),
        ]
        if frame is None:
            schema = {c: pl.String() for c in columns} | dict(self.graph.definition(key).columns)
            return self.engine.lazy(pl.DataFrame(schema={c: schema[c] for c in columns}))
        present = set(frame.columns)
        return frame.select(
            *(nw.col(c) if c in present else nw.lit(None, nw.String).alias(c) for c in columns)
        )

    # -- writes ------------------------------------------------------------------------------

    def write(self, feature: Any, rows: Any, *, materialization_id: str | None = None) -> int:
        """Append rows for `feature`; returns how many were written.

        Rows carry the id columns, user columns and the provenance columns from the
        increment (for non-root features they are computed if absent). Optional
        `metaxy_data_version__<field>` columns override data versions.

        Raises:
            UnknownFeatureError: the feature is not in the graph.
            WriteValidationError: missing/null/duplicate ids, wrong dtypes, unknown columns,
                missing provenance on a root. Nothing is written.
        """
        key = self.graph.spec(feature).key
        stamped = self.prepare_rows(key, rows, materialization_id=materialization_id)
        if stamped.height:
            dropped = self._dropped_children(key, stamped)
            self._record_settings()
            batch = (
                stamped
                if dropped is None
                else pl.concat([stamped, dropped], how="diagonal_relaxed")
            )
            self._append(key.table_name, batch)
        return stamped.height

    def _dropped_children(self, key: FeatureKey, stamped: pl.DataFrame) -> pl.DataFrame | None:
        """Expansion: a write holds each written parent's full set of children.

        Live children of those parents missing from the write get deletion markers in the
        same append; left live, their old provenance would keep the parent stale forever.
        """
        spec = self.graph.spec(key)
        parent, ids = list(spec.parent_key), list(spec.id_columns)
        latest = self.latest(key) if parent != ids else None
        if latest is None:
            return None
        old = (
            latest.join(self.engine.lazy(stamped.select(parent).unique()), on=parent, how="semi")
            .join(self.engine.lazy(stamped.select(ids)), on=ids, how="anti")
            .collect(backend="polars")
            .to_native()
        )
        if old.is_empty():
            return None
        first = stamped.row(0, named=True)
        return old.with_columns(
            pl.lit(first[C.UPDATED_AT], pl.Datetime("us", "UTC")).alias(C.UPDATED_AT),
            pl.lit(first[C.UPDATED_AT], pl.Datetime("us", "UTC")).alias(C.DELETED_AT),
            pl.lit(first[C.WRITE_ID]).alias(C.WRITE_ID),
        )

    def prepare_rows(
        self, feature: Any, rows: Any, *, materialization_id: str | None = None
    ) -> pl.DataFrame:
        """Validate and stamp rows with every system column, without writing them."""
        definition = self.graph.definition(feature)
        spec = definition.spec
        what = f"Write to {spec.key}"
        frame = W.to_polars(rows, what=what)
        W.validate_ids(frame, spec.id_columns, what=what)
        frame = W.coerce_columns(frame, definition, what=what)
        frame = self._with_provenance(spec.key, frame, what)
        user = [
            c
            for c in frame.columns
            if not C.is_system(c) and c not in spec.id_columns and not c.startswith("__mx")
        ]
        carried = {
            c for cols in self.graph.upstream_columns(spec.key).values() for c in cols.values()
        }
        if definition.feature_class is not None:
            unknown = [
                c
                for c in user
                if c not in definition.columns and c not in carried and c not in spec.field_keys
            ]
            if unknown:
                raise WriteValidationError(
                    f"{what}: unknown column(s) {unknown}; declare them on the feature class "
                    f"{definition.feature_class.__name__} or drop them."
                )
            user = [c for c in user if c in definition.columns]
        else:
            user = [c for c in user if c not in carried and c not in spec.field_keys]
        fields = list(spec.field_keys)
        frame = frame.with_columns(
            pl.coalesce(pl.col(C.data_version_column(f)), pl.col(C.provenance_column(f))).alias(
                C.data_version_column(f)
            )
            if C.data_version_column(f) in frame.columns
            else pl.col(C.provenance_column(f)).alias(C.data_version_column(f))
            for f in fields
        )
        lazy = nw.from_native(frame.lazy()).with_columns(
            data_version_expr(fields).alias("__mx_dv_in")
        )
        frame = (
            PolarsEngine()
            .hash(lazy, {C.DATA_VERSION: "__mx_dv_in"}, self.hash_settings)
            .collect()
            .to_native()
        )
        now = W.utc_now()
        frame = frame.with_columns(
            *(pl.lit(spec.field(f).code_version).alias(C.code_version_column(f)) for f in fields),
            pl.lit(feature_version(self.graph, spec.key)).alias(C.FEATURE_VERSION),
            pl.lit(self.graph.project_version).alias(C.PROJECT_VERSION),
            pl.lit(now, pl.Datetime("us", "UTC")).alias(C.UPDATED_AT),
            pl.lit(None, pl.Datetime("us", "UTC")).alias(C.DELETED_AT),
            pl.lit(materialization_id, pl.String).alias(C.MATERIALIZATION_ID),
            pl.lit(W.new_write_id()).alias(C.WRITE_ID),
        )
        frame = self._with_created_at(spec.key, frame, now)
        return frame.select(*spec.id_columns, *user, *self._system_columns(fields))

    @staticmethod
    def _system_columns(fields: Sequence[str]) -> list[str]:
        return [
            C.PROVENANCE,
            *(C.provenance_column(f) for f in fields),
            C.DATA_VERSION,
            *(C.data_version_column(f) for f in fields),
            *(C.code_version_column(f) for f in fields),
            C.FEATURE_VERSION,
            C.PROJECT_VERSION,
            C.CREATED_AT,
            C.UPDATED_AT,
            C.DELETED_AT,
            C.MATERIALIZATION_ID,
            C.WRITE_ID,
        ]

    def _with_provenance(self, key: FeatureKey, frame: pl.DataFrame, what: str) -> pl.DataFrame:
        spec = self.graph.spec(key)
        needed = [C.PROVENANCE, *(C.provenance_column(f) for f in spec.field_keys)]
        missing = [c for c in needed if c not in frame.columns]
        if not missing:
            nulls = [c for c in needed if frame.get_column(c).null_count()]
            if nulls:
                raise WriteValidationError(f"{what}: provenance column(s) {nulls} hold nulls.")
            return frame
        if spec.is_root:
            raise WriteValidationError(
                f"{what}: root rows need the provenance columns {missing}; write the rows "
                "returned by resolve_update(..., samples=...) with your columns added."
            )
        expected = self._expected(key, None)
        if expected is None:
            raise WriteValidationError(
                f"{what}: an upstream was never written, so provenance cannot be computed."
            )
        keys = list(spec.parent_key)
        provenance = (
            expected.select(*keys, *needed)
            .join(self.engine.lazy(frame.select(keys).unique()), on=keys, how="semi")
            .collect(backend="polars")
            .to_native()
        )
        out = frame.drop([c for c in needed if c in frame.columns]).join(
            provenance, on=keys, how="left"
        )
        lost = out.filter(pl.col(C.PROVENANCE).is_null())
        if lost.height:
            raise WriteValidationError(
                f"{what}: {lost.height} row(s) have no upstream rows, "
                f"e.g. {lost.select(keys).head(5).to_dicts()}."
            )
        return out

    def _with_created_at(self, key: FeatureKey, frame: pl.DataFrame, now: Any) -> pl.DataFrame:
        ids = list(self.graph.spec(key).id_columns)
        latest = self.latest(key, include_deleted=True)
        if latest is None:
            return frame.with_columns(pl.lit(now, pl.Datetime("us", "UTC")).alias(C.CREATED_AT))
        created = (
            latest.select(*ids, C.CREATED_AT)
            .join(self.engine.lazy(frame.select(ids)), on=ids, how="semi")
            .collect(backend="polars")
            .to_native()
        )
        return frame.join(created, on=ids, how="left").with_columns(
            pl.col(C.CREATED_AT)
            .fill_null(pl.lit(now, pl.Datetime("us", "UTC")))
            .cast(pl.Datetime("us", "UTC"))
        )

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
        now = W.utc_now()
        rows = rows.with_columns(
            pl.lit(now, pl.Datetime("us", "UTC")).alias(C.UPDATED_AT),
            pl.lit(now, pl.Datetime("us", "UTC")).alias(C.DELETED_AT),
            pl.lit(materialization_id, pl.String).alias(C.MATERIALIZATION_ID),
            pl.lit(W.new_write_id()).alias(C.WRITE_ID),
        )
        self._append(table, rows)
        return rows.height

    # -- system tables -------------------------------------------------------------------------

    def push_graph_snapshot(self, *, tags: dict[str, str] | None = None) -> str:
        """Record the graph's definitions (tagged e.g. with a git commit); return its version."""
        snapshot = self.graph.snapshot()
        self._append(
            SNAPSHOTS_TABLE,
            pl.DataFrame(
                {
                    "project_version": [snapshot["project_version"]],
                    "snapshot": [json.dumps(snapshot, sort_keys=True)],
                    "tags": [json.dumps(tags or {}, sort_keys=True)],
                    "pushed_at": [W.utc_now()],
                    C.WRITE_ID: [W.new_write_id()],
                },
                schema_overrides={"pushed_at": pl.Datetime("us", "UTC")},
            ),
        )
        return snapshot["project_version"]

    def graph_snapshots(self) -> pl.DataFrame:
        """Every pushed snapshot, oldest first."""
        if not self._exists(SNAPSHOTS_TABLE):
            return pl.DataFrame(
                schema={
                    "project_version": pl.String,
                    "snapshot": pl.String,
                    "tags": pl.String,
                    "pushed_at": pl.Datetime("us", "UTC"),
                }
            )
        return (
            self._scan(SNAPSHOTS_TABLE)
            .sort(C.WRITE_ID)
            .collect(backend="polars")
            .to_native()
            .drop(C.WRITE_ID)
        )

    def write_batch(
        self, batch_key: str, feature: Any, sample_ids: Any, *, kind: str, status: str = "pending"
    ) -> None:
        """Record a batch manifest: the exact sample ids a Dagster partition stands for."""
        key = self.graph.spec(feature).key
        ids = W.to_polars(sample_ids, what=f"Batch {batch_key}").select(
            self.graph.spec(key).id_columns
        )
        self._append_batch(
            batch_key, key.path, json.dumps(ids.to_dicts(), default=str), kind, status, ids.height
        )

    def set_batch_status(self, batch_key: str, status: str) -> None:
        """Append a status change for a batch (the latest status wins)."""
        current = self.read_batch(batch_key)
        self._append_batch(
            batch_key,
            current["feature"],
            current["sample_ids"],
            current["kind"],
            status,
            current["size"],
        )

    def _append_batch(
        self, batch_key: str, feature: str, ids_json: str, kind: str, status: str, size: int
    ) -> None:
        now = W.utc_now()
        self._append(
            BATCHES_TABLE,
            pl.DataFrame(
                {
                    "batch_key": [batch_key],
                    "feature": [feature],
                    "sample_ids": [ids_json],
                    "size": [size],
                    "kind": [kind],
                    "status": [status],
                    "updated_at": [now],
                    C.WRITE_ID: [W.new_write_id()],
                },
                schema_overrides={"updated_at": pl.Datetime("us", "UTC"), "size": pl.Int64},
            ),
        )

    def batches(self, *, status: str | None = None) -> pl.DataFrame:
        """The latest state of every batch manifest, oldest first."""
        if not self._exists(BATCHES_TABLE):
            return pl.DataFrame(
                schema={
                    "batch_key": pl.String,
                    "feature": pl.String,
                    "sample_ids": pl.String,
                    "size": pl.Int64,
                    "kind": pl.String,
                    "status": pl.String,
                    "updated_at": pl.Datetime("us", "UTC"),
                }
            )
        frame = self.engine.latest(self._scan(BATCHES_TABLE), ["batch_key", "feature"], C.WRITE_ID)
        if status is not None:
            frame = frame.filter(nw.col("status") == status)
        return frame.sort("batch_key").collect(backend="polars").to_native().drop(C.WRITE_ID)

    def read_batch(self, batch_key: str) -> dict[str, Any]:
        """One batch manifest as a dict (`sample_ids` decoded with `batch_ids`)."""
        rows = self.batches().filter(pl.col("batch_key") == batch_key)
        if rows.is_empty():
            raise UnknownFeatureError(f"No batch manifest {batch_key!r} in this store.")
        return rows.row(0, named=True)

    def batch_ids(self, batch_key: str) -> pl.DataFrame:
        """The sample ids of a batch, typed like the feature's id columns."""
        batch = self.read_batch(batch_key)
        definition = self.graph.definition(batch["feature"])
        schema = {c: definition.columns[c] for c in definition.spec.id_columns}
        return pl.DataFrame(json.loads(batch["sample_ids"]), schema=schema)

    # -- copies --------------------------------------------------------------------------------

    def copy_to(
        self,
        other: "MetadataStore",
        *,
        features: Iterable[Any] | None = None,
        filters: Sequence[str] = (),
    ) -> dict[str, int]:
        """Copy the full history of features (filtered by SQL predicates) into `other`."""
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
            for predicate in filters:
                frame = self.engine.filter_sql(frame, predicate)
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


def _predicate_columns(predicate: str) -> list[str]:
    """The columns a SQL predicate reads (parsed with polars' SQL parser)."""
    try:
        return pl.sql_expr(predicate).meta.root_names()
    except Exception as exc:
        raise SpecError(f"Cannot parse filter {predicate!r}: {exc}") from exc
