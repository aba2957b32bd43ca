"""Turning user rows into validated, fully stamped rows before any byte is written."""

import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

import narwhals as nw
import polars as pl
from polars.datatypes import DataTypeClass

from metaxy_core._definition import FeatureDefinition
from metaxy_core._errors import WriteValidationError

_lock = threading.Lock()
_last = [0]


def new_write_id() -> str:
    """A sortable id, unique per write: nanoseconds, then a random suffix."""
    with _lock:
        now = max(time.time_ns(), _last[0] + 1)
        _last[0] = now
    return f"{now:020d}-{secrets.token_hex(4)}"


def utc_now() -> datetime:
    """Now, in UTC with microsecond precision (what every store keeps)."""
    return datetime.now(UTC)


def to_polars(rows: Any, *, what: str) -> pl.DataFrame:
    """Accept polars, pandas, pyarrow or any narwhals-supported eager frame."""
    if isinstance(rows, pl.DataFrame):
        return rows
    if isinstance(rows, pl.LazyFrame):
        return rows.collect()
    try:
        return nw.from_native(rows, eager_only=True).to_polars()
    except TypeError as exc:
        raise WriteValidationError(
            f"{what}: expected a dataframe, got {type(rows).__name__}."
        ) from exc


def validate_ids(frame: pl.DataFrame, id_columns: tuple[str, ...], *, what: str) -> None:
    """Id columns present, non-null and unique."""
    missing = [c for c in id_columns if c not in frame.columns]
    if missing:
        raise WriteValidationError(
            f"{what}: missing id column(s) {missing}; got columns {frame.columns}."
        )
    for c in id_columns:
        nulls = frame.get_column(c).null_count()
        if nulls:
            raise WriteValidationError(f"{what}: id column {c!r} has {nulls} null value(s).")
    dupes = frame.select(id_columns).filter(pl.struct(id_columns).is_duplicated())
    if dupes.height:
        sample = dupes.unique().head(5).to_dicts()
        raise WriteValidationError(
            f"{what}: {dupes.height} rows share ids, e.g. {sample}; "
            "each sample may appear once per write."
        )


# A declared `pl.List(pl.Int64)` keeps the class `Int64` as its inner type, not an instance.
DType = pl.DataType | DataTypeClass


def _compatible(actual: DType, expected: DType) -> bool:
    if actual == expected or actual == pl.Null:
        return True
    if expected.is_integer() and actual.is_integer():
        return True
    if expected.is_float() and (actual.is_float() or actual.is_integer()):
        return True
    if isinstance(expected, pl.Datetime) and isinstance(actual, pl.Datetime):
        return True
    if isinstance(expected, pl.List) and isinstance(actual, pl.List):
        return _compatible(actual.inner, expected.inner)
    return False


def coerce_columns(
    frame: pl.DataFrame, definition: FeatureDefinition, *, what: str
) -> pl.DataFrame:
    """Check declared column dtypes and cast compatible ones (Int32 -> Int64)."""
    casts: list[pl.Expr] = []
    for column, dtype in definition.columns.items():
        if column not in frame.columns:
            continue
        actual = frame.schema[column]
        if not _compatible(actual, dtype):
            raise WriteValidationError(
                f"{what}: column {column!r} has dtype {actual}, expected {dtype}."
            )
        if actual != dtype:
            casts.append(pl.col(column).cast(dtype))
    return frame.with_columns(casts) if casts else frame
