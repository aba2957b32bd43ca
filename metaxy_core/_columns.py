"""Names of the system columns every store writes next to the user columns."""

from collections.abc import Iterable

import polars as pl

from metaxy_core._guard import guarded_function

PREFIX = "metaxy_"
PROVENANCE = "metaxy_provenance"
DATA_VERSION = "metaxy_data_version"
FEATURE_VERSION = "metaxy_feature_version"
PROJECT_VERSION = "metaxy_project_version"
CREATED_AT = "metaxy_created_at"
UPDATED_AT = "metaxy_updated_at"
DELETED_AT = "metaxy_deleted_at"
MATERIALIZATION_ID = "metaxy_materialization_id"
# Sortable, unique per write: the latest row per sample is the one with the greatest write id.
WRITE_ID = "metaxy_write_id"
STALE_FIELDS = "metaxy_stale_fields"
STALE_REASONS = "metaxy_stale_reasons"
# In a compute's returned rows: a non-null reason marks a deliberately skipped sample (a row
# with only its ids and the reason); it is recorded, not written, until its inputs change.
SKIP_REASON = "metaxy_skip_reason"


@guarded_function
def provenance_column(field: str) -> str:
    """Per-field provenance column."""
    return f"metaxy_provenance__{field}"


@guarded_function
def data_version_column(field: str) -> str:
    """Per-field data version column (provenance unless overridden at write time)."""
    return f"metaxy_data_version__{field}"


@guarded_function
def code_version_column(field: str) -> str:
    """Per-field code version the row was computed with (tells code from data staleness)."""
    return f"metaxy_code_version__{field}"


@guarded_function
def is_system(column: str) -> bool:
    """True for columns metaxy owns."""
    return column.startswith(PREFIX)


def system_dtypes(fields: Iterable[str]) -> dict[str, pl.DataType]:
    """The system columns of a feature's stored rows and their types (dep filters read them)."""
    fields = list(fields)
    text = [
        PROVENANCE,
        DATA_VERSION,
        FEATURE_VERSION,
        PROJECT_VERSION,
        MATERIALIZATION_ID,
        WRITE_ID,
        *(make(f) for f in fields for make in (provenance_column, data_version_column)),
        *(code_version_column(f) for f in fields),
    ]
    dtypes: dict[str, pl.DataType] = {c: pl.String() for c in text}
    return dtypes | {c: pl.Datetime("us", "UTC") for c in (CREATED_AT, UPDATED_AT, DELETED_AT)}
