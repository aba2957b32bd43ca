"""The DuckDB engine: the versioning plan runs as SQL on narwhals-wrapped DuckDB relations.

Only this module and `_duckdb.py` import duckdb. Row hashes equal the polars engine's byte
for byte: md5 and sha256 are DuckDB built-ins (lowercase hex, like polars-hash); xxh3_64
has no built-in, so it is an Arrow UDF that calls the very polars-hash function the
polars engine uses.
"""

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias, cast

import duckdb
import narwhals as nw
import polars as pl
import polars_hash as plh
from duckdb.func import PythonUDFType

from metaxy_core._errors import SpecError
from metaxy_core._filters import Filter
from metaxy_core.versioning._engine import Composition
from metaxy_core.versioning._hashing import HashAlgorithm, HashSettings

XXH3_UDF = "metaxy_xxh3_64"

# pyarrow ships no type information: its arrays and tables are `Any` to the type checker,
# and the polars/duckdb calls whose signatures mention them carry narrow pyright ignores.
ArrowArray: TypeAlias = Any
ArrowTable: TypeAlias = Any


def quote(name: str) -> str:
    """A SQL identifier, quoted (column names are user-chosen)."""
    return '"' + name.replace('"', '""') + '"'


_XXH3_EXPR = plh.col("v").nchash.xxh3_64()


def _xxh3_64(values: ArrowArray) -> ArrowArray:
    """xxh3_64 of each string as a u64, by the very function the polars engine uses.

    DuckDB calls this once per 2048-row vector, so per-call overhead matters: a Series
    wrapped as a frame and a u64 result (zero-copy back to Arrow) cost ~90 us a call where
    a frame built through `pl.from_arrow` and the decimal text made here cost ~250 us.
    DuckDB prints the u64 in decimal (`hash_sql`), as the polars engine's cast does.
    """
    frame = pl.Series("v", values).to_frame()
    return cast(ArrowArray, frame.select(_XXH3_EXPR).to_series().to_arrow())


_udf_numbers = itertools.count()


def register_functions(con: duckdb.DuckDBPyConnection) -> str:
    """Register the xxh3_64 UDF on a connection; returns its name.

    The name is unique per connection: connections of one process to the same file share
    a catalog, where a second function of the same name is refused.
    """
    name = f"{XXH3_UDF}_{next(_udf_numbers)}"
    con.create_function(  # pyright: ignore[reportUnknownMemberType]
        name,
        _xxh3_64,
        [duckdb.sqltype("VARCHAR")],
        duckdb.sqltype("UBIGINT"),
        type=PythonUDFType.ARROW,
        side_effects=False,
    )
    return name


def hash_sql(column: str, settings: HashSettings, *, xxh3_udf: str = XXH3_UDF) -> str:
    """The SQL expression hashing a string column as `settings` say."""
    match settings.algorithm:
        case HashAlgorithm.XXH3_64:
            expr = f"CAST({xxh3_udf}({quote(column)}) AS VARCHAR)"
        case HashAlgorithm.MD5:
            expr = f"md5({quote(column)})"
        case HashAlgorithm.SHA256:
            expr = f"sha256({quote(column)})"
    return expr if settings.length is None else f"left({expr}, {settings.length})"


def composed(composition: Composition) -> duckdb.Expression:
    """A hash input (`Composition`) as a DuckDB expression, as the polars engine builds it.

    Literals are constants, never SQL text: a code version may hold quotes or NUL.
    """
    text = duckdb.sqltype("VARCHAR")
    null = duckdb.ConstantExpression(None).cast(text)

    def part(label: str, column: str) -> duckdb.Expression:
        value = duckdb.ColumnExpression(column)
        if not composition.framed:  # `||` is null when the value is
            return duckdb.FunctionExpression("||", duckdb.ConstantExpression(label), value)
        length = duckdb.FunctionExpression("strlen", value).cast(text)  # bytes, as len_bytes
        colon = duckdb.ConstantExpression(":")
        framed = duckdb.FunctionExpression(
            "concat", duckdb.ConstantExpression(label), length, colon, value
        )
        return duckdb.CaseExpression(value.isnull(), null).otherwise(framed)

    parts = [part(*p) for p in composition.parts]
    head = duckdb.ConstantExpression(composition.head)
    out = duckdb.FunctionExpression("concat", head, *parts)  # concat() skips nulls
    if not composition.all_or_null or not parts:
        return out
    nulls = (duckdb.ColumnExpression(c).isnull() for _, c in composition.parts)
    return duckdb.CaseExpression(functools.reduce(lambda a, b: a | b, nulls), null).otherwise(out)


_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT")


def id_text_sql(column: str, sql_type: str) -> str:
    """The canonical text of an id column (`metaxy_core._canonical`), printed as polars does.

    Raises:
        SpecError: the column's type is not an id dtype.
    """
    name = quote(column)
    if sql_type == "VARCHAR":
        return name
    if sql_type in ("BOOLEAN", *_INTEGERS):
        return f"CAST({name} AS VARCHAR)"
    if sql_type.startswith("DECIMAL("):  # DuckDB prints DECIMAL(5,5) as '.5': polars as '0.5'
        return f"regexp_replace(CAST({name} AS VARCHAR), '^(-?)\\.', '\\10.')"
    if sql_type == "DATE":  # days since the epoch, as polars' Int32 physical value
        return f"CAST({name} - DATE '1970-01-01' AS VARCHAR)"
    if sql_type in ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE"):  # microseconds, UTC
        return f"CAST(epoch_us({name}) AS VARCHAR)"
    raise SpecError(f"Id column {column!r} has SQL type {sql_type}, which ids may not have.")


class DuckDBEngine:
    """Runs the versioning plan inside DuckDB; frames are lazy relations of one connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._cached: list[str] = []
        self._xxh3_udf = register_functions(con)

    def hash(
        self, frame: nw.LazyFrame[Any], columns: Mapping[str, str], settings: HashSettings
    ) -> nw.LazyFrame[Any]:
        rel: duckdb.DuckDBPyRelation = frame.to_native()
        replaced = [out for out in columns if out in rel.columns]
        exprs = [
            duckdb.SQLExpression(hash_sql(src, settings, xxh3_udf=self._xxh3_udf)).alias(out)
            for out, src in columns.items()
        ]
        return nw.from_native(rel.select(duckdb.StarExpression(exclude=replaced), *exprs))

    def hash_compositions(
        self, frame: nw.LazyFrame[Any], inputs: Mapping[str, Composition], settings: HashSettings
    ) -> nw.LazyFrame[Any]:
        # One select: every relation step binds the whole query again.
        rel: duckdb.DuckDBPyRelation = frame.to_native()
        replaced = [out for out in inputs if out in rel.columns]
        exprs = [self._hashed(composed(c), settings).alias(out) for out, c in inputs.items()]
        return nw.from_native(rel.select(duckdb.StarExpression(exclude=replaced), *exprs))

    def _hashed(self, value: duckdb.Expression, settings: HashSettings) -> duckdb.Expression:
        """`value` hashed as `hash_sql` does, as an expression."""
        name = {
            HashAlgorithm.XXH3_64: self._xxh3_udf,
            HashAlgorithm.MD5: "md5",
            HashAlgorithm.SHA256: "sha256",
        }[settings.algorithm]
        out = duckdb.FunctionExpression(name, value)
        if settings.algorithm is HashAlgorithm.XXH3_64:  # the UDF returns the u64
            out = out.cast(duckdb.sqltype("VARCHAR"))
        if settings.length is None:
            return out
        return duckdb.FunctionExpression("left", out, duckdb.ConstantExpression(settings.length))

    def join_using(
        self,
        left: nw.LazyFrame[Any],
        right: nw.LazyFrame[Any],
        on: Sequence[str],
        *,
        how: Literal["inner", "left"],
    ) -> nw.LazyFrame[Any]:
        # A join on column names is USING: one step (narwhals' takes five, see full_join).
        lhs: duckdb.DuckDBPyRelation = left.to_native()
        rhs: duckdb.DuckDBPyRelation = right.to_native()
        return nw.from_native(lhs.join(rhs, ", ".join(quote(c) for c in on), how=how))

    def full_join(
        self,
        left: nw.LazyFrame[Any],
        right: nw.LazyFrame[Any],
        left_on: Sequence[str],
        right_on: Sequence[str],
    ) -> nw.LazyFrame[Any]:
        # A plain relation join (narwhals' re-aliases and re-selects: five binds, not three).
        on = " AND ".join(
            f"l.{quote(a)} = r.{quote(b)}" for a, b in zip(left_on, right_on, strict=True)
        )
        lhs: duckdb.DuckDBPyRelation = left.to_native()
        rhs: duckdb.DuckDBPyRelation = right.to_native()
        return nw.from_native(lhs.set_alias("l").join(rhs.set_alias("r"), on, how="outer"))

    def sorted_concat(
        self, frame: nw.LazyFrame[Any], by: Sequence[str], columns: Mapping[str, str]
    ) -> nw.LazyFrame[Any]:
        rel: duckdb.DuckDBPyRelation = frame.to_native()
        # VARCHAR ordering in DuckDB is by bytes, like polars' string sort.
        aggs = [
            duckdb.SQLExpression(f"string_agg({quote(src)}, ',' ORDER BY {quote(src)})").alias(out)
            for out, src in columns.items()
        ]
        keys = [duckdb.ColumnExpression(c) for c in by]
        return nw.from_native(rel.aggregate([*keys, *aggs], ", ".join(quote(c) for c in by)))

    def compose(
        self, frame: nw.LazyFrame[Any], inputs: Mapping[str, Composition]
    ) -> nw.LazyFrame[Any]:
        rel: duckdb.DuckDBPyRelation = frame.to_native()
        replaced = [out for out in inputs if out in rel.columns]
        exprs = [composed(c).alias(out) for out, c in inputs.items()]
        return nw.from_native(rel.select(duckdb.StarExpression(exclude=replaced), *exprs))

    def id_text(self, frame: nw.LazyFrame[Any], columns: Mapping[str, str]) -> nw.LazyFrame[Any]:
        rel: duckdb.DuckDBPyRelation = frame.to_native()
        types = {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True)}
        exprs = [
            duckdb.SQLExpression(id_text_sql(src, types[src])).alias(out)
            for out, src in columns.items()
        ]
        return nw.from_native(rel.select(duckdb.StarExpression(), *exprs))

    def filter(self, frame: nw.LazyFrame[Any], flt: Filter) -> nw.LazyFrame[Any]:
        rel: duckdb.DuckDBPyRelation = frame.to_native()
        # SQL generated from the validated tree, never the user's text.
        sql = flt.to_sql(frame.collect_schema())
        try:
            return nw.from_native(rel.filter(sql))
        except duckdb.Error as exc:
            raise SpecError(f"Cannot apply filter {flt.text!r} ({sql}): {exc}") from exc

    def latest(
        self, frame: nw.LazyFrame[Any], ids: Sequence[str], order_by: str
    ) -> nw.LazyFrame[Any]:
        return frame.filter(nw.col(order_by) == nw.col(order_by).max().over(*ids))

    def lazy(self, frame: pl.DataFrame) -> nw.LazyFrame[Any]:
        return nw.from_native(self._con.from_arrow(to_arrow(frame)))

    def cache(self, frame: nw.LazyFrame[Any]) -> nw.LazyFrame[Any]:
        rel: duckdb.DuckDBPyRelation = frame.to_native()
        name = f"__metaxy_cache_{len(self._cached)}"
        view = name + "_source"
        self._con.register(view, rel)  # relations may read Python objects: register, not a view
        try:
            self._con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {view}")
        finally:
            self._con.unregister(view)
        self._cached.append(name)
        return nw.from_native(self._con.table(name))

    def release(self) -> None:
        for name in self._cached:
            self._con.execute(f"DROP TABLE IF EXISTS {name}")
        self._cached.clear()


def to_arrow(frame: pl.DataFrame) -> ArrowTable:
    """Arrow for DuckDB: all-null untyped columns become strings (no NULL column type)."""
    nulls = [c for c, dtype in frame.schema.items() if dtype == pl.Null]
    if nulls:
        frame = frame.with_columns(pl.col(nulls).cast(pl.String))
    return cast(ArrowTable, frame.to_arrow())
