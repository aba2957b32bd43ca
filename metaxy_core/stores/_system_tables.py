"""The store's own tables: hash settings, graph snapshots and batch manifests.

These functions build and decode the tables' rows; the store reads and appends them with
its primitives, so every backend keeps them the same way.
"""

import json
from collections.abc import Sequence
from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._errors import HashSettingsMismatchError
from metaxy_core._graph import FeatureGraph
from metaxy_core.stores import _writes as W
from metaxy_core.versioning._engine import Engine
from metaxy_core.versioning._hashing import (
    HashSettings,
    settings_from_record,
    settings_record,
)

SETTINGS_TABLE = "metaxy_system__settings"
SNAPSHOTS_TABLE = "metaxy_system__snapshots"
BATCHES_TABLE = "metaxy_system__batches"

UTC_US = pl.Datetime("us", "UTC")
SNAPSHOT_SCHEMA: dict[str, pl.DataType] = {
    "project_version": pl.String(),
    "snapshot": pl.String(),
    "tags": pl.String(),
    "pushed_at": UTC_US,
}
BATCH_SCHEMA: dict[str, pl.DataType] = {
    "batch_key": pl.String(),
    "feature": pl.String(),
    "sample_ids": pl.String(),
    "size": pl.Int64(),
    "kind": pl.String(),
    "status": pl.String(),
    "updated_at": UTC_US,
}


# -- hash settings -----------------------------------------------------------------------------

# Whether a store checks, after recording its settings, that they are the ones the store
# kept (tests switch it off to show the race it catches).
CHECK_RECORDED_SETTINGS = True


def settings_row(settings: HashSettings) -> pl.DataFrame:
    """The one row recording the store's hash settings."""
    return pl.DataFrame({"hash": [settings_record(settings)]})


def adopt_settings(settings: pl.DataFrame, requested: HashSettings | None) -> HashSettings:
    """The recorded hash settings, checked against the requested ones.

    Raises:
        HashSettingsMismatchError: other settings were requested; they would stale every sample.
    """
    recorded = settings_from_record(settings["hash"].item(0))
    if requested is not None and recorded != requested:
        raise HashSettingsMismatchError(
            f"This store was created with hash settings {recorded.describe()}, but "
            f"{requested.describe()} were requested. Open it with "
            f"HashSettings({recorded.algorithm.value!r}, length={recorded.length}) or omit "
            "hash_settings to adopt the recorded ones; changing them would make every "
            "sample stale."
        )
    return recorded


def check_recorded_settings(settings: pl.DataFrame, used: HashSettings) -> None:
    """Check that the settings the store kept are `used`, those a write's rows were hashed with.

    Raises:
        HashSettingsMismatchError: another writer recorded other settings first.
    """
    recorded = adopt_settings(settings, None)
    if recorded != used:
        raise HashSettingsMismatchError(
            f"Another writer recorded hash settings {recorded.describe()} in this store first; "
            f"this store was opened with {used.describe()} while the store was still empty. "
            "Nothing was written. Reopen the store without hash_settings to adopt the "
            f"recorded ones (or with HashSettings({recorded.algorithm.value!r}, "
            f"length={recorded.length})) and recompute the rows."
        )


# -- graph snapshots ---------------------------------------------------------------------------


def snapshot_row(snapshot: dict[str, Any], tags: dict[str, str] | None) -> pl.DataFrame:
    """One pushed graph snapshot, as JSON text (tags e.g. a git commit)."""
    return pl.DataFrame(
        {
            "project_version": [snapshot["project_version"]],
            "snapshot": [json.dumps(snapshot, sort_keys=True)],
            "tags": [json.dumps(tags or {}, sort_keys=True)],
            "pushed_at": [W.utc_now()],
            C.WRITE_ID: [W.new_write_id()],
        },
        schema_overrides={"pushed_at": UTC_US},
    )


def snapshots(rows: nw.LazyFrame[Any] | None) -> pl.DataFrame:
    """Every pushed snapshot, oldest first (`rows` is None if none was pushed)."""
    if rows is None:
        return pl.DataFrame(schema=SNAPSHOT_SCHEMA)
    return rows.sort(C.WRITE_ID).collect(backend="polars").to_native().drop(C.WRITE_ID)


# -- batch manifests ---------------------------------------------------------------------------


def batch_row(
    graph: FeatureGraph,
    batch_key: str,
    feature: Any,
    sample_ids: Any,
    *,
    kind: str,
    status: str,
) -> pl.DataFrame:
    """A new manifest: the feature's id columns of `sample_ids`, kept as JSON."""
    key = graph.spec(feature).key
    ids = W.to_polars(sample_ids, what=f"Batch {batch_key}").select(graph.spec(key).id_columns)
    return status_row(
        {
            "batch_key": batch_key,
            "feature": key.path,
            "sample_ids": json.dumps(ids.to_dicts(), default=str),
            "size": ids.height,
            "kind": kind,
        },
        status,
    )


def status_row(batch: dict[str, Any], status: str) -> pl.DataFrame:
    """A manifest row with `status`, stamped now; the latest row of a batch wins."""
    return pl.DataFrame(
        {
            "batch_key": [batch["batch_key"]],
            "feature": [batch["feature"]],
            "sample_ids": [batch["sample_ids"]],
            "size": [batch["size"]],
            "kind": [batch["kind"]],
            "status": [status],
            "updated_at": [W.utc_now()],
            C.WRITE_ID: [W.new_write_id()],
        },
        schema_overrides={"updated_at": UTC_US, "size": pl.Int64},
    )


def latest_batches(
    engine: Engine, rows: nw.LazyFrame[Any] | None, status: str | None
) -> pl.DataFrame:
    """The latest state of every manifest, by batch key (`rows` is None if none was written)."""
    if rows is None:
        return pl.DataFrame(schema=BATCH_SCHEMA)
    frame = engine.latest(rows, ["batch_key", "feature"], C.WRITE_ID)
    if status is not None:
        frame = frame.filter(nw.col("status") == status)
    return frame.sort("batch_key").collect(backend="polars").to_native().drop(C.WRITE_ID)


def decode_ids(graph: FeatureGraph, batch: dict[str, Any]) -> pl.DataFrame:
    """A manifest's sample ids, typed like the feature's id columns."""
    spec = graph.spec(batch["feature"])
    return typed_ids(graph, spec.key, spec.id_columns, json.loads(batch["sample_ids"]))


def typed_ids(
    graph: FeatureGraph, feature: Any, columns: Sequence[str], records: list[dict[str, Any]]
) -> pl.DataFrame:
    """Id values decoded from JSON records, typed like the feature's columns.

    Dates, datetimes and decimals were kept as their `str()` text (JSON has no such types).
    """
    declared = graph.definition(feature).columns
    schema = {c: declared.get(c, pl.String()) for c in columns}
    as_text = {c for c, d in schema.items() if d.is_temporal() or d.is_decimal()}
    frame = pl.DataFrame(
        records, schema={c: pl.String() if c in as_text else d for c, d in schema.items()}
    )
    return frame.with_columns(parsed_text(c, schema[c]) for c in as_text)


def parsed_text(column: str, dtype: pl.DataType) -> pl.Expr:
    text = pl.col(column)
    if isinstance(dtype, pl.Datetime):
        return text.str.to_datetime(time_unit=dtype.time_unit, time_zone=dtype.time_zone)
    if isinstance(dtype, pl.Date):
        return text.str.to_date()
    return text.cast(dtype)
