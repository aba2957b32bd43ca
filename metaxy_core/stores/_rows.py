"""Turning a write's rows into stored rows: provenance, data versions, stamps, child markers.

Everything here runs before the single append of a write, so a bad row fails the whole
write and nothing is half-written.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._definition import FeatureDefinition
from metaxy_core._errors import WriteValidationError
from metaxy_core._graph import FeatureGraph
from metaxy_core._keys import FeatureKey
from metaxy_core.stores import _writes as W
from metaxy_core.stores._resolve import StoreReads, expected_rows
from metaxy_core.versioning import feature_version
from metaxy_core.versioning._hashing import HashSettings
from metaxy_core.versioning._polars_engine import PolarsEngine, polars_hash_expr
from metaxy_core.versioning._provenance import OVERRIDE_PREFIX, PART_END, by_field

UTC_US = pl.Datetime("us", "UTC")


def prepare_rows(
    store: StoreReads, feature: Any, rows: Any, *, materialization_id: str | None
) -> pl.DataFrame:
    """Validate `rows` and stamp every system column (see `MetadataStore.prepare_rows`)."""
    definition = store.graph.definition(feature)
    spec = definition.spec
    what = f"Write to {spec.key}"
    if materialization_id is not None and not isinstance(materialization_id, str):
        raise WriteValidationError(
            f"{what}: materialization_id must be text (e.g. a Dagster run id), "
            f"got {type(materialization_id).__name__}."
        )
    frame = W.to_polars(rows, what=what)
    W.validate_ids(frame, spec.id_columns, what=what)
    W.check_column_names(frame, what=what)
    W.check_overrides(frame, spec.field_keys, what=what)
    frame = W.coerce_columns(frame, definition, what=what)
    frame = _with_provenance(store, spec.key, frame, what)
    frame = _with_declared_columns(definition, frame, what)
    user = _user_columns(store.graph, definition, frame, what)
    fields = list(spec.field_keys)
    frame = _with_data_versions(frame, fields, store.hash_settings)
    now = W.utc_now()
    frame = frame.with_columns(
        *(pl.lit(spec.field(f).code_version).alias(C.code_version_column(f)) for f in fields),
        pl.lit(feature_version(store.graph, spec.key)).alias(C.FEATURE_VERSION),
        pl.lit(store.graph.project_version).alias(C.PROJECT_VERSION),
        pl.lit(now, UTC_US).alias(C.UPDATED_AT),
        pl.lit(None, UTC_US).alias(C.DELETED_AT),
        pl.lit(materialization_id, pl.String).alias(C.MATERIALIZATION_ID),
        pl.lit(W.new_write_id()).alias(C.WRITE_ID),
    )
    frame = _with_created_at(store, spec.key, frame, now)
    return frame.select(*spec.id_columns, *user, *_system_columns(fields))


def _with_declared_columns(
    definition: FeatureDefinition, frame: pl.DataFrame, what: str
) -> pl.DataFrame:
    """A feature class's required columns must be there; optional ones default to null."""
    cls = definition.feature_class
    if cls is None:
        return frame
    missing = [c for c in definition.user_columns if c not in frame.columns]
    required = [c for c in missing if c in cls.model_fields and cls.model_fields[c].is_required()]
    if required:
        raise WriteValidationError(
            f"{what}: missing column(s) {required} that {cls.__name__} declares as required."
        )
    return frame.with_columns(pl.lit(None, definition.columns[c]).alias(c) for c in missing)


def _user_columns(
    graph: FeatureGraph, definition: FeatureDefinition, frame: pl.DataFrame, what: str
) -> list[str]:
    """The user columns a write keeps.

    Upstream columns carried by the increment and field input columns are dropped; a
    feature class also rejects columns it does not declare.
    """
    spec = definition.spec
    user = [
        c
        for c in frame.columns
        if not C.is_system(c) and c not in spec.id_columns and not c.startswith("__mx")
    ]
    carried = {c for cols in graph.upstream_columns(spec.key).values() for c in cols.values()}
    if definition.feature_class is None:
        return [c for c in user if c not in carried and c not in spec.field_keys]
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
    return [c for c in user if c in definition.columns]


def _with_data_versions(
    frame: pl.DataFrame, fields: list[str], settings: HashSettings
) -> pl.DataFrame:
    """Per-field data versions (the user's override, else the provenance) and their hash.

    A data version holding `PART_END` is stored as the hash of `OVERRIDE_PREFIX` and its
    text, so no stored data version can end a part of a hash input early (`_provenance`).
    Hashed with the polars reference engine whatever the store, so values are identical.
    """
    frame = frame.with_columns(
        pl.coalesce(pl.col(C.data_version_column(f)), pl.col(C.provenance_column(f))).alias(
            C.data_version_column(f)
        )
        if C.data_version_column(f) in frame.columns
        else pl.col(C.provenance_column(f)).alias(C.data_version_column(f))
        for f in fields
    )
    engine = PolarsEngine()
    frame = _without_part_ends(frame, [C.data_version_column(f) for f in fields], settings)
    lazy = engine.compose(
        nw.from_native(frame.lazy()), {"__mx_dv_in": by_field(fields, C.data_version_column)}
    )
    hashed = engine.hash(lazy, {C.DATA_VERSION: "__mx_dv_in"}, settings).drop("__mx_dv_in")
    return hashed.collect().to_native()


def _without_part_ends(
    frame: pl.DataFrame, columns: list[str], settings: HashSettings
) -> pl.DataFrame:
    """Data versions holding `PART_END` replaced by their hash (see `_with_data_versions`)."""
    ends = [c for c in columns if frame.get_column(c).str.contains(PART_END, literal=True).any()]
    if not ends:  # the usual case: a cheap scan, no hashing
        return frame
    prefixed = {c: "__mx_override__" + c for c in ends}
    lazy = frame.lazy().with_columns(
        (pl.lit(OVERRIDE_PREFIX) + pl.col(c)).alias(tmp) for c, tmp in prefixed.items()
    )
    lazy = lazy.with_columns(
        pl.when(pl.col(c).str.contains(PART_END, literal=True))
        .then(polars_hash_expr(tmp, settings))
        .otherwise(pl.col(c))
        .alias(c)
        for c, tmp in prefixed.items()
    )
    return lazy.drop(*prefixed.values()).collect()


def _system_columns(fields: Sequence[str]) -> list[str]:
    """The system columns of a stored row, in their stored order."""
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


def _with_provenance(
    store: StoreReads, key: FeatureKey, frame: pl.DataFrame, what: str
) -> pl.DataFrame:
    """Check the rows' provenance columns, or compute them for a non-root feature."""
    spec = store.graph.spec(key)
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
    expected = expected_rows(store, key, None)
    if expected is None:
        raise WriteValidationError(
            f"{what}: an upstream was never written, so provenance cannot be computed."
        )
    keys = list(spec.parent_key)
    provenance = (
        expected.select(*keys, *needed)
        .join(store.engine.lazy(frame.select(keys).unique()), on=keys, how="semi")
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


def _with_created_at(
    store: StoreReads, key: FeatureKey, frame: pl.DataFrame, now: datetime
) -> pl.DataFrame:
    """A rewritten sample keeps its first `created_at` (soft-deleted ones too); new ones get now."""
    ids = list(store.graph.spec(key).id_columns)
    latest = store.latest(key, include_deleted=True)
    if latest is None:
        return frame.with_columns(pl.lit(now, UTC_US).alias(C.CREATED_AT))
    created = (
        latest.select(*ids, C.CREATED_AT)
        .join(store.engine.lazy(frame.select(ids)), on=ids, how="semi")
        .collect(backend="polars")
        .to_native()
    )
    return frame.join(created, on=ids, how="left").with_columns(
        pl.col(C.CREATED_AT).fill_null(pl.lit(now, UTC_US)).cast(UTC_US)
    )


def dropped_children(
    store: StoreReads, key: FeatureKey, stamped: pl.DataFrame
) -> pl.DataFrame | None:
    """Expansion: a write holds each written parent's full set of children.

    Live children of those parents missing from the write get deletion markers in the
    same append; left live, their old provenance would keep the parent stale forever.
    """
    spec = store.graph.spec(key)
    parent, ids = list(spec.parent_key), list(spec.id_columns)
    latest = store.latest(key) if parent != ids else None
    if latest is None:
        return None
    old = (
        latest.join(store.engine.lazy(stamped.select(parent).unique()), on=parent, how="semi")
        .join(store.engine.lazy(stamped.select(ids)), on=ids, how="anti")
        .collect(backend="polars")
        .to_native()
    )
    if old.is_empty():
        return None
    first = stamped.row(0, named=True)
    return old.with_columns(
        pl.lit(first[C.UPDATED_AT], UTC_US).alias(C.UPDATED_AT),
        pl.lit(first[C.UPDATED_AT], UTC_US).alias(C.DELETED_AT),
        pl.lit(first[C.MATERIALIZATION_ID], pl.String).alias(C.MATERIALIZATION_ID),
        pl.lit(first[C.WRITE_ID]).alias(C.WRITE_ID),
    )


def deletion_markers(rows: pl.DataFrame, *, materialization_id: str | None) -> pl.DataFrame:
    """Soft-delete marker rows: the samples' latest rows, stamped deleted now in a new write."""
    now = W.utc_now()
    return rows.with_columns(
        pl.lit(now, UTC_US).alias(C.UPDATED_AT),
        pl.lit(now, UTC_US).alias(C.DELETED_AT),
        pl.lit(materialization_id, pl.String).alias(C.MATERIALIZATION_ID),
        pl.lit(W.new_write_id()).alias(C.WRITE_ID),
    )
