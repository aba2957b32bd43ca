"""The Ibis engine: the versioning plan as Ibis expressions, run inside a SQL database.

Only `_sql*` modules import ibis. Each frame is a narwhals LazyFrame over an Ibis table
expression; nothing is executed until the store collects an increment. What narwhals
cannot say portably (hashes, byte lengths, the canonical text of ids, sorted string
aggregation, the latest row per sample, filters) is built here from Ibis expressions and
the few database functions a `Dialect` names. Hash inputs are composed exactly as the
polars engine composes them, so the bytes hashed, and the hashes, are identical.
"""

# Ibis annotates many of its functions partially: unknown types from it are expected here.
# pyright: reportUnknownMemberType=false, reportUnknownVariableType=false
# pyright: reportUnknownArgumentType=false

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.operations as ops
import ibis.expr.types as ir
import narwhals as nw
import polars as pl
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from metaxy_core._errors import HashSettingsMismatchError, SpecError
from metaxy_core._filters import Filter
from metaxy_core.versioning._engine import Composition
from metaxy_core.versioning._hashing import HashAlgorithm, HashSettings

Lazy = nw.LazyFrame[Any]
Text = ir.StringValue
# Ibis builtin functions: each declaration compiles to a call of the database's function
# of that name (no Python runs in the database).


@ibis.udf.scalar.builtin(name="octet_length")
def _pg_octet_length(value: str) -> int: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="md5")
def _pg_md5(value: str) -> str: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="convert_to")
def _pg_convert_to(value: str, encoding: str) -> bytes: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="sha256")
def _pg_sha256(value: bytes) -> bytes: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="encode")
def _pg_encode(value: bytes, form: str) -> str: ...  # type: ignore[empty-body]


# `extract` as a function (PostgreSQL 14+) returns an exact numeric, unlike `date_part`.
@ibis.udf.scalar.builtin(name="extract", catalog="pg_catalog")
def _pg_extract(field: str, value: dt.Timestamp(timezone="UTC")) -> dt.Decimal(38, 6): ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="date_mi", catalog="pg_catalog")
def _pg_date_mi(a: dt.date, b: dt.date) -> int: ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="length")
def _ch_length(value: str) -> int: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="MD5")
def _ch_md5(value: str) -> bytes: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="SHA256")
def _ch_sha256(value: str) -> bytes: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="hex")
def _ch_hex(value: bytes) -> str: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="lower")
def _ch_lower(value: str) -> str: ...  # type: ignore[empty-body]


@ibis.udf.scalar.builtin(name="xxh3")
def _ch_xxh3(value: str) -> dt.uint64: ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="toString")
def _ch_to_string(value: dt.uint64) -> str: ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="toUnixTimestamp64Micro")
def _ch_epoch_us(value: dt.Timestamp(timezone="UTC", scale=6)) -> int: ...  # type: ignore[empty-body,valid-type]


@ibis.udf.agg.builtin(name="groupArray")
def _ch_group_array(value: str) -> dt.Array(dt.string): ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="arraySort")
def _ch_array_sort(values: dt.Array(dt.string)) -> dt.Array(dt.string): ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="arrayStringConcat")
def _ch_array_join(values: dt.Array(dt.string), separator: str) -> str: ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="toDecimalString")
def _ch_decimal_text(value: dt.Decimal(38, 9), scale: int) -> str: ...  # type: ignore[empty-body,valid-type]


@ibis.udf.scalar.builtin(name="toInt32")
def _ch_to_int32(value: dt.date) -> int: ...  # type: ignore[empty-body,valid-type]


_F = Callable[[ir.Value], ir.Value]


@dataclass(frozen=True)
class Dialect:
    """What differs between databases: function names and how values become text.

    Attributes:
        name: the Ibis backend name (`postgres`, `clickhouse`).
        byte_length: a string's length in UTF-8 bytes.
        hashes: per algorithm, the lowercase text of a string's hash, as polars-hash gives it.
        epoch_days: a date as days since 1970-01-01 (an integer).
        epoch_us: a timestamp as microseconds since the epoch, UTC (an integer).
        sorted_join: the aggregate joining a group's non-null strings with ',', sorted by
            their UTF-8 bytes as polars sorts them.
        decimal_text: a decimal as plain text with exactly `scale` fraction digits.
        as_text: polars dtype classes kept as JSON text (the database has no such type).
    """

    name: str
    byte_length: _F
    hashes: Mapping[HashAlgorithm, _F]
    epoch_days: _F
    epoch_us: _F
    sorted_join: _F
    decimal_text: Callable[[ir.Value, int], ir.Value]
    as_text: tuple[type[pl.DataType], ...]


POSTGRES = Dialect(
    name="postgres",
    byte_length=_pg_octet_length,
    hashes={
        HashAlgorithm.MD5: _pg_md5,
        HashAlgorithm.SHA256: lambda v: _pg_encode(_pg_sha256(_pg_convert_to(v, "UTF8")), "hex"),
    },
    epoch_days=lambda v: _pg_date_mi(v, ibis.date(1970, 1, 1)),
    epoch_us=lambda v: (cast(ir.NumericValue, _pg_extract("epoch", v)) * 1_000_000).cast("int64"),
    # Text order follows the database's collation; the bytes of the UTF-8 text do not.
    sorted_join=lambda v: cast(Text, v).group_concat(",", order_by=_pg_convert_to(v, "UTF8")),
    decimal_text=lambda v, scale: v.cast("string"),
    as_text=(pl.Struct, pl.List, pl.Array, pl.Binary),
)
CLICKHOUSE = Dialect(
    name="clickhouse",
    byte_length=_ch_length,  # ClickHouse's length() counts bytes
    hashes={
        HashAlgorithm.MD5: lambda v: _ch_lower(_ch_hex(_ch_md5(v))),
        HashAlgorithm.SHA256: lambda v: _ch_lower(_ch_hex(_ch_sha256(v))),
        HashAlgorithm.XXH3_64: lambda v: _ch_to_string(_ch_xxh3(v)),
    },
    epoch_days=_ch_to_int32,
    epoch_us=_ch_epoch_us,
    # ClickHouse compares strings by their bytes; Ibis cannot order its group_concat.
    sorted_join=lambda v: _ch_array_join(_ch_array_sort(_ch_group_array(v)), ","),
    decimal_text=_ch_decimal_text,  # its toString drops trailing zeros
    as_text=(pl.Struct, pl.List, pl.Array, pl.Binary),
)
DIALECTS = {d.name: d for d in (POSTGRES, CLICKHOUSE)}


def check_hash_support(dialect: Dialect, settings: HashSettings, *, where: str) -> None:
    """Refuse hash settings the database cannot compute natively.

    Raises:
        HashSettingsMismatchError: naming the algorithm, the database and what it has.
    """
    if settings.algorithm not in dialect.hashes:
        has = ", ".join(sorted(a.value for a in dialect.hashes))
        raise HashSettingsMismatchError(
            f"{where}: {dialect.name} has no built-in {settings.algorithm.value}, so it cannot "
            f"compute these rows' hashes inside the database. Use one of: {has} (e.g. "
            "hash_settings=HashSettings('md5')); a store recorded with another algorithm "
            "must be read by a store that has it (memory, DuckDB, Delta)."
        )


def _table(frame: Lazy) -> ir.Table:
    return cast(ir.Table, frame.to_native())


def _lazy(table: ir.Table) -> Lazy:
    return nw.from_native(table)


_names = itertools.count()


class IbisEngine:
    """Runs the versioning plan inside the database an Ibis backend is connected to.

    Args:
        dialect: the database's functions.
        upload: turns a polars frame into an Ibis table of the same connection (a
            temporary table), and `drop` removes such a table again.
    """

    def __init__(
        self,
        dialect: Dialect,
        *,
        upload: Callable[[pl.DataFrame], ir.Table],
        materialize: Callable[[ir.Table], ir.Table],
        drop: Callable[[ir.Table], None],
    ) -> None:
        self.dialect = dialect
        self._upload = upload
        self._materialize = materialize
        self._drop = drop
        self._cached: list[ir.Table] = []

    def hash(self, frame: Lazy, columns: Mapping[str, str], settings: HashSettings) -> Lazy:
        check_hash_support(self.dialect, settings, where="Hashing rows")
        function = self.dialect.hashes[settings.algorithm]
        table = _table(frame)

        def hashed(source: str) -> Text:
            value = cast(Text, function(table[source]))
            return value if settings.length is None else value.substr(0, settings.length)

        return _lazy(table.mutate(**{out: hashed(src) for out, src in columns.items()}))

    def hash_compositions(
        self, frame: Lazy, inputs: Mapping[str, Composition], settings: HashSettings
    ) -> Lazy:
        table = _table(self.compose(frame, {f"__mx_in__{o}": c for o, c in inputs.items()}))
        hashed = self.hash(_lazy(table), {o: f"__mx_in__{o}" for o in inputs}, settings)
        return hashed.drop(*(f"__mx_in__{o}" for o in inputs))

    def join_using(
        self, left: Lazy, right: Lazy, on: Sequence[str], *, how: Literal["inner", "left"]
    ) -> Lazy:
        return left.join(right, on=list(on), how=how)

    def full_join(
        self, left: Lazy, right: Lazy, left_on: Sequence[str], right_on: Sequence[str]
    ) -> Lazy:
        return left.join(right, left_on=list(left_on), right_on=list(right_on), how="full")

    def sorted_concat(self, frame: Lazy, by: Sequence[str], columns: Mapping[str, str]) -> Lazy:
        table = _table(frame)
        aggs = {out: self.dialect.sorted_join(table[src]) for out, src in columns.items()}
        return _lazy(table.group_by(list(by)).aggregate(**aggs))

    def compose(self, frame: Lazy, inputs: Mapping[str, Composition]) -> Lazy:
        table = _table(frame)
        return _lazy(table.mutate(**{out: self._composed(table, c) for out, c in inputs.items()}))

    def _composed(self, table: ir.Table, composition: Composition) -> Text:
        """A hash input as the polars engine builds it: `head`, then the non-null parts."""
        out = cast(Text, ibis.literal(composition.head, type="string"))
        values = [cast(Text, table[column]) for _, column in composition.parts]
        for (label, _), value in zip(composition.parts, values, strict=True):
            written = cast(Text, ibis.literal(label, type="string"))
            if composition.framed:
                length = cast(ir.IntegerValue, self.dialect.byte_length(value)).cast("string")
                written = written.concat(length, ":", value)
            else:
                written = written.concat(value)
            part = cast(Text, ibis.ifelse(value.isnull(), ibis.literal("", type="string"), written))
            out = out.concat(part)
        if composition.all_or_null and values:
            any_null = ibis.or_(*(v.isnull() for v in values))
            return cast(Text, ibis.ifelse(any_null, ibis.null("string"), out))
        return out

    def id_text(self, frame: Lazy, columns: Mapping[str, str]) -> Lazy:
        table = _table(frame)
        schema = table.schema()
        return _lazy(
            table.mutate(
                **{out: self._id_text(table[src], schema[src], src) for out, src in columns.items()}
            )
        )

    def _id_text(self, value: ir.Value, dtype: dt.DataType, column: str) -> Text:
        """The canonical text of an id (`metaxy_core._canonical`), computed by the database."""
        if dtype.is_string():
            return cast(Text, value)
        if dtype.is_decimal():
            scale = cast(dt.Decimal, dtype).scale or 0
            return self.dialect.decimal_text(value, scale).cast("string")
        if dtype.is_integer() or dtype.is_boolean():
            return value.cast("string")
        if dtype.is_date():
            return self.dialect.epoch_days(value).cast("string")
        if dtype.is_timestamp():
            return self.dialect.epoch_us(value).cast("string")
        raise SpecError(f"Id column {column!r} has SQL type {dtype}, which ids may not have.")

    def filter(self, frame: Lazy, flt: Filter) -> Lazy:
        table = _table(frame)
        # The SQL is generated from the validated tree (DuckDB dialect, identifiers quoted),
        # then translated to this database's dialect by sqlglot: never the user's text.
        try:
            condition = sqlglot.parse_one(flt.to_sql(frame.collect_schema()), read="duckdb")
            sql = condition.transform(self._portable).sql(dialect=self.dialect.name)
        except SqlglotError as exc:
            raise SpecError(
                f"Cannot translate filter {flt.text!r} for {self.dialect.name}: {exc}"
            ) from exc
        alias = f"__mx_filtered_{next(_names)}"
        query = f'SELECT * FROM "{alias}" WHERE {sql}'
        parent = cast(Any, table.alias(alias).op())  # an aliased relation, typed as a node
        view = ops.SQLStringView(parent=parent, query=query, schema=table.schema())
        return _lazy(view.to_expr())

    def _portable(self, node: exp.Expr) -> exp.Expr:
        """DuckDB's 128-bit integer (overflow-safe `abs`) as PostgreSQL's exact NUMERIC."""
        if (
            self.dialect.name == "postgres"
            and isinstance(node, exp.DataType)
            and node.this == exp.DataType.Type.INT128
        ):
            return exp.DataType.build("DECIMAL(39, 0)")
        return node

    def latest(self, frame: Lazy, ids: Sequence[str], order_by: str) -> Lazy:
        table = _table(frame)
        rank = "__mx_rank"
        window = ibis.window(group_by=[table[c] for c in ids], order_by=[table[order_by].desc()])
        ranked = table.mutate(**{rank: ibis.row_number().over(window)})
        return _lazy(ranked.filter(ranked[rank] == 0).drop(rank))

    def lazy(self, frame: pl.DataFrame) -> Lazy:
        table = self._upload(frame)
        self._cached.append(table)
        return _lazy(table)

    def cache(self, frame: Lazy) -> Lazy:
        table = self._materialize(_table(frame))
        self._cached.append(table)
        return _lazy(table)

    def release(self) -> None:
        for table in self._cached:
            self._drop(table)
        self._cached.clear()
