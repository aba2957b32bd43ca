"""Turning user rows into validated, fully stamped rows before any byte is written."""

import secrets
import threading
import time
from collections.abc import Mapping, Sequence
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


def _same_kind(actual: DType, stored: DType) -> bool:
    """Scalar types a write may be cast to without changing meaning (Int32 into Int64...)."""
    if actual.is_integer() and stored.is_integer():
        return True
    if stored.is_float() and (actual.is_float() or actual.is_integer()):
        return True
    return (
        isinstance(actual, pl.Datetime)
        and isinstance(stored, pl.Datetime)
        and actual.time_zone == stored.time_zone
    )


def match_stored_types(
    frame: pl.DataFrame, stored: Mapping[str, pl.DataType], *, what: str
) -> pl.DataFrame:
    """Give each column the type the table already stores, the same way on every store.

    All-null untyped columns take the stored type (String for a new column); scalars of
    the same kind are cast (strictly: an overflow is refused); any other difference,
    nested types included (list[int] then list[str], a struct that gains a field), is
    refused: stores never re-cast or drop what they hold.

    Raises:
        WriteValidationError: naming each column with its stored and written type.
    """
    casts: dict[str, pl.DataType] = {}
    clashes: list[str] = []
    for column, actual in frame.schema.items():
        target = stored.get(column)
        if actual == pl.Null:
            casts[column] = target if target is not None and target != pl.Null else pl.String()
        elif target is None or target == pl.Null or actual == target:
            continue
        elif _same_kind(actual, target):
            casts[column] = target
        else:
            clashes.append(f"{column!r} is {actual} here but {target} in the store")
    if clashes:
        raise WriteValidationError(
            f"{what}: column types differ from the stored ones: {'; '.join(clashes)}. "
            "Nothing was written; write a new column instead of changing a type."
        )
    if not casts:
        return frame
    try:
        return frame.with_columns(pl.col(c).cast(t, strict=True) for c, t in casts.items())
    except pl.exceptions.InvalidOperationError as exc:
        raise WriteValidationError(
            f"{what}: values do not fit the stored column types {casts}: {exc}"
        ) from exc


# Unsigned integers are widened to the signed type that holds them (Delta has none).
_SIGNED = {
    pl.UInt8: pl.Int16(),
    pl.UInt16: pl.Int32(),
    pl.UInt32: pl.Int64(),
    pl.UInt64: pl.Int64(),
}
_TEXT = (pl.String, pl.Null)
_SCALARS = (pl.String, pl.Boolean, pl.Binary, pl.Date, pl.Decimal, pl.Null)


def _storable(dtype: DType, where: str) -> DType:
    """The type every store keeps for `dtype` (the same one everywhere), or raise naming it.

    Lossless normalisations only: unsigned to signed integers, categoricals to strings,
    fixed arrays to lists, datetimes to microseconds and zoned ones to UTC (the same
    instants). Durations, times and objects have no common form across the stores.
    """
    if (dtype.is_signed_integer() and dtype != pl.Int128) or dtype.is_float():
        return dtype
    base: Any = dtype.base_type()  # a class, whether `dtype` is an instance or a class
    if base in _SCALARS:
        return dtype
    if base in _SIGNED:
        return _SIGNED[base]
    if base in (pl.Categorical, pl.Enum):
        return pl.String()
    if isinstance(dtype, pl.Datetime):
        zone = None if dtype.time_zone is None else "UTC"
        return pl.Datetime("us", zone)
    if isinstance(dtype, pl.List | pl.Array):
        return pl.List(_storable(dtype.inner, where))
    if isinstance(dtype, pl.Struct):
        return pl.Struct({f.name: _storable(f.dtype, f"{where}.{f.name}") for f in dtype.fields})
    raise WriteValidationError(
        f"{where} has type {dtype}, which the stores cannot all keep alike; store it as "
        "text, numbers, a datetime or a list/struct of those (e.g. a duration as "
        "microseconds: pl.col(c).dt.total_microseconds())."
    )


def _sub_microsecond(series: pl.Series) -> bool:
    """True if a nanosecond datetime column holds instants that microseconds cannot."""
    dtype = series.dtype
    if not isinstance(dtype, pl.Datetime) or dtype.time_unit != "ns":
        return False
    return bool((series.dt.epoch("ns") % 1000 != 0).any())


def storable(frame: pl.DataFrame, stored: Mapping[str, pl.DataType], *, what: str) -> pl.DataFrame:
    """The rows with names and types every store keeps alike, or raise before anything is written.

    Column names must differ in more than case (DuckDB folds case), also from the stored
    columns; types are normalised as `_storable` says, then matched to the stored ones.

    Raises:
        WriteValidationError: naming the colliding columns, or the column and its type.
    """
    # Against the stored columns, then within the write: each colliding pair named once.
    stored_names = {c.lower(): c for c in stored}
    clashes = [
        f"{c!r} and {stored_names[c.lower()]!r}"
        for c in frame.columns
        if stored_names.get(c.lower(), c) != c
    ]
    clashes += [
        f"{c!r} and {d!r}"
        for i, c in enumerate(frame.columns)
        for d in frame.columns[i + 1 :]
        if c.lower() == d.lower()
    ]
    if clashes:
        raise WriteValidationError(
            f"{what}: column names differ only in case: {sorted(set(clashes))}; some stores "
            "ignore case in names. Rename one of each pair. Nothing was written."
        )
    casts: dict[str, DType] = {}
    for column, dtype in frame.schema.items():
        target = _storable(dtype, f"{what}: column {column!r}")
        if _sub_microsecond(frame.get_column(column)):
            raise WriteValidationError(
                f"{what}: column {column!r} holds datetimes finer than a microsecond, the "
                "finest every store keeps; round them (pl.col(c).dt.truncate('1us'))."
            )
        if target != dtype:
            casts[column] = target
    if casts:
        frame = frame.with_columns(
            (
                pl.col(c).dt.convert_time_zone("UTC").dt.cast_time_unit("us")
                if isinstance(t, pl.Datetime) and t.time_zone is not None
                else pl.col(c).cast(t)
            )
            for c, t in casts.items()
        )
    return match_stored_types(frame, stored, what=what)


def check_column_names(frame: pl.DataFrame, *, what: str) -> None:
    """Names polars would read as patterns (`*`, `^...$`) never reach a select."""
    odd = [c for c in frame.columns if c == "*" or (c.startswith("^") and c.endswith("$"))]
    if odd:
        raise WriteValidationError(
            f"{what}: column name(s) {odd} read as patterns to polars; rename them."
        )


_OVERRIDE = "metaxy_data_version__"


def check_overrides(frame: pl.DataFrame, fields: Sequence[str], *, what: str) -> None:
    """Data-version overrides of the feature's fields hold text (a content hash).

    (Columns of fields the feature no longer has, e.g. in rows read back after a field was
    removed, are dropped with the other columns the write does not keep.)
    """
    overrides = [_OVERRIDE + f for f in fields if _OVERRIDE + f in frame.columns]
    schema: dict[str, Any] = dict(frame.schema)  # dtype instances compare equal to classes
    typed = [f"{c!r} is {schema[c]}" for c in overrides if schema[c] not in _TEXT]
    if typed:
        raise WriteValidationError(
            f"{what}: data-version overrides must be text (e.g. a content hash): "
            f"{'; '.join(typed)}."
        )
