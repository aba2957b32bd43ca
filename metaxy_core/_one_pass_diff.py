"""The diff of one increment in one join: new, stale and orphaned samples classified together.

`_increments.diff` answers with three lazy frames, each a join of its own, so an engine runs
the expected provenance and the stored rows three times unless both are cached first (a
temporary table on DuckDB). Here one full outer join keeps only the rows that differ (a
sample on one side only, or whose provenance moved), so only the increment leaves the
engine, and the split into new, stale and orphaned, with each stale row's fields and
reasons, happens in polars on those few rows.

It holds where every sample has one stored row per key (the feature's key is its id
columns: not an expansion); `_increments.diff` covers the rest.
"""

from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._increments import StaleReason
from metaxy_core._spec import FeatureSpec
from metaxy_core.versioning._engine import Engine
from metaxy_core.versioning._hashing import HashSettings
from metaxy_core.versioning._provenance import with_sample_provenance

_CUR = "__mx_cur__"


def _key(column: str) -> str:
    return _CUR + "k_" + column


def _provenance(field: str) -> str:
    return _CUR + "p_" + field


def _code(field: str) -> str:
    return _CUR + "c_" + field


def _code_moved(spec: FeatureSpec, field: str) -> nw.Expr:
    """True where the stored row was computed by another code version of `field` (or none)."""
    stored = nw.col(C.code_version_column(field))
    return stored.is_null() | (stored != nw.lit(spec.field(field).code_version))


def diff_in_one_join(
    spec: FeatureSpec,
    expected: nw.LazyFrame[Any],
    current: nw.LazyFrame[Any],
    engine: Engine,
    settings: HashSettings | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(new, stale, orphaned) of `spec`'s feature, collected: see `_increments.diff`.

    `current` holds the id columns plus per-field provenance and code version columns,
    one row per sample; `stale` carries its stale fields and reasons as lists. With
    `settings`, `expected` holds no sample provenance: it is hashed for the kept rows.
    """
    key = list(spec.id_columns)
    fields = list(spec.field_keys)
    reduced = current.select(
        *(nw.col(c).alias(_key(c)) for c in key),
        *(nw.col(C.provenance_column(f)).alias(_provenance(f)) for f in fields),
        # Whether the stored code version differs, as a boolean: the join carries one column
        # per field for every sample, and text costs ~16 bytes a row (~0.3 GiB at 10M).
        *(_code_moved(spec, f).alias(_code(f)) for f in fields),
    )
    joined = engine.full_join(expected, reduced, key, [_key(c) for c in key])
    only_expected = nw.col(_key(key[0])).is_null()
    only_current = nw.col(key[0]).is_null()
    moved = [
        (nw.col(C.provenance_column(f)) != nw.col(_provenance(f)))
        | nw.col(_provenance(f)).is_null()
        for f in fields
    ]
    differs = nw.any_horizontal(only_expected, only_current, *moved, ignore_nulls=False)
    rows: pl.DataFrame = joined.filter(differs).collect(backend="polars").to_native()
    columns = expected.columns
    if settings is not None:
        rows = with_sample_provenance(rows, fields, settings)
        columns = [*columns, C.PROVENANCE]
    return _split(spec, rows, columns)


def _split(
    spec: FeatureSpec, rows: pl.DataFrame, expected_columns: list[str]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The differing rows of the join, told apart by which side holds the sample."""
    key = list(spec.id_columns)
    fields = list(spec.field_keys)
    on_current = pl.col(_key(key[0])).is_not_null()
    on_expected = pl.col(key[0]).is_not_null()
    new = rows.filter(~on_current).select(expected_columns)
    orphaned = rows.filter(~on_expected).select(pl.col(_key(c)).alias(c) for c in key)
    moved = {
        f: pl.col(_provenance(f)).is_null()
        | (pl.col(C.provenance_column(f)) != pl.col(_provenance(f)))
        for f in fields
    }
    reason = {
        f: pl.when(pl.col(_code(f)))
        .then(pl.lit(StaleReason.CODE.value))
        .otherwise(pl.lit(StaleReason.UPSTREAM.value))
        for f in fields
    }
    stale = rows.filter(on_current & on_expected).select(
        *expected_columns,
        pl.concat_list([pl.when(moved[f]).then(pl.lit(f)) for f in fields])
        .list.drop_nulls()
        .alias(C.STALE_FIELDS),
        pl.concat_list([pl.when(moved[f]).then(reason[f]) for f in fields])
        .list.drop_nulls()
        .alias(C.STALE_REASONS),
    )
    return new, stale, orphaned
