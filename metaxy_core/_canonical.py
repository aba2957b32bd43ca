"""Canonical text of id values and root inputs: one form per dtype, alike on every engine.

Provenance hashes text, so a value reaches a hash only through its canonical text. polars
and DuckDB print many values differently (`1e20` / `1e+20`, dates and times, time zones),
so the text is defined here, per dtype, and each engine generates exactly it:

==============================  ======================================================
id dtype                        canonical text
==============================  ======================================================
String                          the value itself
Int8, Int16, Int32, Int64       decimal digits, with `-` for negatives
Boolean                         `true` or `false`
Decimal(p, s)                   plain decimal with exactly s fraction digits (`-0.50`)
Date                            days since 1970-01-01 (`-1` is 1969-12-31)
Datetime("us"), ("us", "UTC")   microseconds since 1970-01-01T00:00 UTC (a value without
                                a time zone is read as UTC)
==============================  ======================================================

Ids of any other dtype are refused when the feature is defined (`check_id_columns`), so the
refusal is the same on every store. Ids are never null: every write refuses null ids.

Root inputs (versions a user hands to `resolve_update(samples=)`) are turned into text in
polars before any engine sees them, so they agree on every store by construction. Besides
the id dtypes they may be unsigned integers, floats (the IEEE-754 bits of the Float64 value
as an unsigned decimal, with -0.0 folded into 0.0 and every NaN into one), binary (lowercase
hex), datetimes of any precision (microseconds since the epoch) or all-null.
"""

from collections.abc import Mapping

import polars as pl
from polars.datatypes import DataTypeClass

from metaxy_core._errors import SpecError, WriteValidationError
from metaxy_core._spec import FeatureSpec

ID_DTYPES = (
    "String, Int8, Int16, Int32, Int64, Boolean, Decimal, Date, Datetime('us') or "
    "Datetime('us', 'UTC')"
)
_SIGNED = (pl.Int8, pl.Int16, pl.Int32, pl.Int64)
# Columns may be declared with a dtype class (`pl.Int64`) as well as an instance.
DType = pl.DataType | DataTypeClass


def _instance(dtype: DType) -> pl.DataType:
    return dtype() if isinstance(dtype, type) else dtype


def _id_refusal(dtype: DType) -> str | None:
    """Why `dtype` cannot type an id column (None: it can)."""
    dtype = _instance(dtype)
    if isinstance(dtype, (pl.String, pl.Boolean, pl.Decimal, pl.Date, *_SIGNED)):
        return None
    if isinstance(dtype, pl.Datetime):
        if dtype.time_unit != "us":
            return "Delta Lake keeps datetimes in microseconds; declare Datetime('us', 'UTC')"
        if dtype.time_zone not in (None, "UTC"):
            return (
                "DuckDB and Delta Lake keep zoned datetimes in UTC; declare "
                "Datetime('us', 'UTC') (written values in other zones are converted)"
            )
        return None
    if dtype.is_float():
        return "floats compare unreliably (NaN, -0.0, rounding); use Decimal, Int64 or text"
    if dtype.is_unsigned_integer():
        return "Delta Lake has no unsigned integers; use Int64"
    if isinstance(dtype, pl.Binary):
        return "store the bytes as hex text"
    return "it has no canonical text on every store"


def check_id_columns(spec: FeatureSpec, columns: Mapping[str, DType]) -> None:
    """Refuse id columns whose dtype has no canonical text.

    Raises:
        SpecError: names the feature, the column, its dtype and what to use instead.
    """
    for column in spec.id_columns:
        dtype = columns.get(column)
        reason = None if dtype is None else _id_refusal(dtype)
        if reason is not None:
            raise SpecError(
                f"Feature {spec.key}: id column {column!r} has dtype {dtype}, which ids may "
                f"not have: {reason}. Id columns may be {ID_DTYPES}."
            )


def id_text(column: str, dtype: DType) -> pl.Expr:
    """The polars expression giving the canonical text of an id column.

    Raises:
        SpecError: the dtype is not an id dtype.
    """
    dtype = _instance(dtype)
    reason = _id_refusal(dtype)
    if reason is not None:
        raise SpecError(f"Id column {column!r} has dtype {dtype}: {reason}.")
    expr = pl.col(column)
    if isinstance(dtype, pl.String):
        return expr
    if isinstance(dtype, pl.Date):
        return expr.cast(pl.Int32).cast(pl.String)
    if isinstance(dtype, pl.Datetime):
        return expr.dt.epoch("us").cast(pl.String)
    return expr.cast(pl.String)  # integers, booleans, decimals print alike everywhere


def input_text(column: str, dtype: DType, *, what: str) -> pl.Expr:
    """The polars expression giving the canonical text of a root input column.

    Raises:
        WriteValidationError: the dtype has no canonical text (nested types, times...).
    """
    dtype = _instance(dtype)
    expr = pl.col(column)
    if _id_refusal(dtype) is None:
        return id_text(column, dtype)
    if dtype.is_unsigned_integer():
        return expr.cast(pl.String)
    if dtype.is_float():
        value = expr.cast(pl.Float64)
        folded = pl.when(value == 0).then(0.0).when(value.is_nan()).then(float("nan"))
        return folded.otherwise(value).reinterpret(dtype=pl.UInt64).cast(pl.String)
    if isinstance(dtype, pl.Binary):
        return expr.bin.encode("hex")
    if isinstance(dtype, pl.Datetime):
        return expr.dt.epoch("us").cast(pl.String)
    if dtype == pl.Null:
        return expr.cast(pl.String)
    raise WriteValidationError(
        f"{what}: input column {column!r} has dtype {dtype}; inputs must be text, numbers, "
        "booleans, decimals, dates, datetimes or bytes. Pass a content hash or another "
        "version string instead."
    )
