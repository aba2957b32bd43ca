"""Scanning a Delta table at its loaded version: the data files, read as polars reads them.

`pl.scan_delta` hands polars a dataset that asks deltalake for the schema, the file list,
the file sizes and (for a filtered read) every file's statistics again each time a query
over it is planned or its schema is asked: 1-3 ms per scan and per query, which is most of
a 10k-sample resolve. A loaded `DeltaTable` already names its files and schema, so a table
without the features that need more than that (deletion vectors, partition columns, column
mapping) becomes a plain `scan_parquet` of those files, with the casts `scan_delta` uses.
Others keep `pl.scan_delta`.
"""

from collections.abc import Mapping

import polars as pl
from deltalake import DeltaTable

# What `scan_delta` allows a data file to differ by from the table's schema (files written
# before a column was added lack it; integer and float widths may have been widened).
_CASTS = pl.ScanCastOptions(
    integer_cast="upcast",
    float_cast=["upcast", "downcast"],
    datetime_cast=["nanosecond-downcast", "millisecond-upcast", "convert-timezone"],
    missing_struct_fields="insert",
    extra_struct_fields="ignore",
    categorical_to_string="allow",
)


def scan_table(table: DeltaTable, storage_options: Mapping[str, str] | None) -> pl.LazyFrame:
    """The rows of `table` at the version it has loaded, lazily."""
    metadata = table.metadata()
    reader_features = table.protocol().reader_features or []
    if (
        metadata.partition_columns
        or "deletionVectors" in reader_features
        or "columnMapping" in reader_features
        or metadata.configuration.get("delta.columnMapping.mode", "none") != "none"
    ):
        return pl.scan_delta(table)
    schema = pl.Schema(table.schema())  # pyright: ignore[reportArgumentType]
    files = table.file_uris()
    if not files:
        return pl.LazyFrame(schema=schema)
    return pl.scan_parquet(
        files,
        schema=schema,
        missing_columns="insert",
        extra_columns="ignore",
        cast_options=_CASTS,
        storage_options=dict(storage_options) if storage_options else None,
    )
