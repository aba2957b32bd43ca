"""What SQLStore asks of each database: tables, bulk loads, transactions and locks.

`SQLStore` (`_sql`) keeps the storage primitives database-neutral; the statements that
differ live here, one class per database. Rows arrive encoded for storage (see
`_sql.storable`): every column has a scalar type this module maps to a SQL type.

PostgreSQL: one transaction per append (DDL included: PostgreSQL's DDL is transactional),
rows loaded with `COPY ... FROM STDIN` in CSV, appends to one table serialised by a
transaction-scoped advisory lock, `lock()` a session advisory lock. ClickHouse has no
transactions: an append is one `INSERT` of one block (atomic in MergeTree while it fits
`max_insert_block_size`, which is raised to the row count), and `lock()` serialises the
threads of one process only.
"""

# Ibis annotates many of its functions partially: unknown types from it are expected here.
# pyright: reportUnknownMemberType=false, reportUnknownVariableType=false
# pyright: reportUnknownArgumentType=false

import contextlib
import itertools
from abc import ABC, abstractmethod
from collections.abc import Generator, Mapping
from typing import Any, cast

import ibis
import ibis.expr.types as ir
import polars as pl
from ibis.backends import BaseBackend

_temp_numbers = itertools.count()
# Whether writers of one table take its locks (tests switch them off to show the race they
# prevent: first writes from several processes each creating the table).
LOCK_WRITERS = True


def quote(name: str) -> str:
    """A SQL identifier, double-quoted (PostgreSQL and ClickHouse both accept it)."""
    return '"' + name.replace('"', '""') + '"'


class Tables(ABC):
    """The statements of one database, over one Ibis connection."""

    def __init__(self, con: BaseBackend) -> None:
        self.con = con

    @abstractmethod
    def exists(self, table: str) -> bool:
        """True if the table exists."""

    @abstractmethod
    def columns(self, table: str) -> list[str]:
        """The table's column names."""

    @abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """One all-or-nothing unit of work, as far as the database has one."""

    @abstractmethod
    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Exclude other writers of `name` while the block runs."""

    @abstractmethod
    def lock_until_commit(self, name: str) -> None:
        """Exclude other writers of `name` until the current transaction ends."""

    @abstractmethod
    def create(self, table: str, schema: Mapping[str, pl.DataType]) -> None:
        """Create an empty table with these columns."""

    @abstractmethod
    def add_columns(self, table: str, schema: Mapping[str, pl.DataType]) -> None:
        """Add these (nullable) columns."""

    @abstractmethod
    def insert(self, table: str, rows: pl.DataFrame) -> None:
        """Append rows (columns the table has, by name)."""

    @abstractmethod
    def delete_ids(self, table: str, ids: pl.DataFrame) -> None:
        """Delete every row whose id columns equal a row of `ids`."""

    @abstractmethod
    def upload(self, rows: pl.DataFrame) -> ir.Table:
        """A temporary table holding `rows`, as an Ibis table."""

    @abstractmethod
    def materialize(self, expr: ir.Table) -> ir.Table:
        """A temporary table holding the result of `expr`."""

    @abstractmethod
    def drop(self, table: ir.Table) -> None:
        """Drop a temporary table made by `upload` or `materialize`."""


class PostgresTables(Tables):
    """PostgreSQL through Ibis's psycopg connection."""

    @property
    def _pg(self) -> Any:
        return cast(Any, self.con).con  # the psycopg connection Ibis holds

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cursor = self._pg.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []

    def exists(self, table: str) -> bool:
        return self._execute("SELECT to_regclass(%s) IS NOT NULL", (quote(table),))[0][0]

    def columns(self, table: str) -> list[str]:
        rows = self._execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (quote(table),),
        )
        return [r[0] for r in rows]

    @contextlib.contextmanager
    def transaction(self) -> Generator[None]:
        with self._pg.transaction():
            yield

    @contextlib.contextmanager
    def lock(self, name: str) -> Generator[None]:
        if not LOCK_WRITERS:
            yield
            return
        key = f"metaxy:{name}"
        self._execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        try:
            yield
        finally:
            self._execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))

    def lock_until_commit(self, name: str) -> None:
        if not LOCK_WRITERS:
            return
        key = f"metaxy:{name}"
        self._execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))

    def create(self, table: str, schema: Mapping[str, pl.DataType]) -> None:
        columns = ", ".join(f"{quote(c)} {_pg_type(t)}" for c, t in schema.items())
        self._execute(f"CREATE TABLE {quote(table)} ({columns})")

    def add_columns(self, table: str, schema: Mapping[str, pl.DataType]) -> None:
        for column, dtype in schema.items():
            self._execute(
                f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column)} {_pg_type(dtype)}"
            )

    def insert(self, table: str, rows: pl.DataFrame) -> None:
        if rows.is_empty():
            return
        columns = ", ".join(quote(c) for c in rows.columns)
        # CSV keeps '' and NULL apart (an empty string is written quoted) and is the fastest
        # bulk path psycopg offers without a Python object per value.
        # Datetimes print as ISO 8601 with microseconds, and an offset when zoned.
        data = rows.write_csv(include_header=False, null_value="")
        with self._pg.cursor() as cursor:
            copy_sql = f"COPY {quote(table)} ({columns}) FROM STDIN (FORMAT csv)"
            with cursor.copy(copy_sql) as copy:
                copy.write(data.encode())

    def delete_ids(self, table: str, ids: pl.DataFrame) -> None:
        staged = self.upload(ids)
        name = staged.get_name()
        same = " AND ".join(f"t.{quote(c)} = s.{quote(c)}" for c in ids.columns)
        try:
            self._execute(f"DELETE FROM {quote(table)} AS t USING {quote(name)} AS s WHERE {same}")
        finally:
            self.drop(staged)

    def upload(self, rows: pl.DataFrame) -> ir.Table:
        name = f"__metaxy_tmp_{next(_temp_numbers)}"
        with self.transaction():
            columns = ", ".join(f"{quote(c)} {_pg_type(t)}" for c, t in rows.schema.items())
            self._execute(f"CREATE TEMP TABLE {quote(name)} ({columns})")
            self.insert(name, rows)
        return self.con.table(name)

    def materialize(self, expr: ir.Table) -> ir.Table:
        name = f"__metaxy_tmp_{next(_temp_numbers)}"
        sql = str(ibis.to_sql(expr, dialect="postgres"))
        self._execute(f"CREATE TEMP TABLE {quote(name)} AS {sql}")
        self._execute(f"ANALYZE {quote(name)}")  # the planner needs its size for the joins
        return self.con.table(name)

    def drop(self, table: ir.Table) -> None:
        self._execute(f"DROP TABLE IF EXISTS {quote(table.get_name())}")


def _pg_type(dtype: pl.DataType) -> str:
    """The PostgreSQL type of a storable polars dtype (see `_sql.storable`)."""
    if isinstance(dtype, pl.Decimal):
        return f"NUMERIC({dtype.precision or 38}, {dtype.scale})"
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    return _PG_TYPES[type(dtype)]


_PG_TYPES: dict[type[pl.DataType], str] = {
    pl.String: "TEXT",
    pl.Boolean: "BOOLEAN",
    pl.Int8: "SMALLINT",
    pl.Int16: "SMALLINT",
    pl.Int32: "INTEGER",
    pl.Int64: "BIGINT",
    pl.UInt8: "SMALLINT",
    pl.UInt16: "INTEGER",
    pl.UInt32: "BIGINT",
    pl.Float32: "REAL",
    pl.Float64: "DOUBLE PRECISION",
    pl.Date: "DATE",
}


class ClickHouseTables(Tables):
    """ClickHouse through Ibis's clickhouse-connect client (MergeTree tables, no transactions)."""

    @property
    def _client(self) -> Any:
        return cast(Any, self.con).con  # the clickhouse_connect client Ibis holds

    def exists(self, table: str) -> bool:
        return bool(self._client.command(f"EXISTS TABLE {quote(table)}"))

    def columns(self, table: str) -> list[str]:
        return list(cast(Any, self.con).get_schema(table).names)

    @contextlib.contextmanager
    def transaction(self) -> Generator[None]:
        yield  # ClickHouse has none: an append is one INSERT (see the module docstring)

    @contextlib.contextmanager
    def lock(self, name: str) -> Generator[None]:
        yield  # no lock across processes; the store's process lock still applies

    def lock_until_commit(self, name: str) -> None:
        """No lock across processes (see the module docstring)."""

    def create(self, table: str, schema: Mapping[str, pl.DataType]) -> None:
        columns = ", ".join(f"{quote(c)} Nullable({_ch_type(t)})" for c, t in schema.items())
        self._client.command(
            f"CREATE TABLE IF NOT EXISTS {quote(table)} ({columns}) "
            "ENGINE = MergeTree ORDER BY tuple()"
        )

    def add_columns(self, table: str, schema: Mapping[str, pl.DataType]) -> None:
        for column, dtype in schema.items():
            self._client.command(
                f"ALTER TABLE {quote(table)} ADD COLUMN IF NOT EXISTS {quote(column)} "
                f"Nullable({_ch_type(dtype)})"
            )

    def insert(self, table: str, rows: pl.DataFrame) -> None:
        if rows.is_empty():
            return
        self._client.insert_arrow(
            table, rows.to_arrow(), settings={"max_insert_block_size": max(rows.height, 1)}
        )

    def delete_ids(self, table: str, ids: pl.DataFrame) -> None:
        staged = self.upload(ids)
        columns = ", ".join(quote(c) for c in ids.columns)
        try:
            self._client.command(
                f"DELETE FROM {quote(table)} WHERE ({columns}) IN "
                f"(SELECT {columns} FROM {quote(staged.get_name())})"
            )
        finally:
            self.drop(staged)

    def upload(self, rows: pl.DataFrame) -> ir.Table:
        name = f"__metaxy_tmp_{next(_temp_numbers)}"
        self.create(name, rows.schema)
        self.insert(name, rows)
        return self.con.table(name)

    def materialize(self, expr: ir.Table) -> ir.Table:
        name = f"__metaxy_tmp_{next(_temp_numbers)}"
        sql = str(ibis.to_sql(expr, dialect="clickhouse"))
        self._client.command(f"CREATE TABLE {quote(name)} ENGINE = Memory AS {sql}")
        return self.con.table(name)

    def drop(self, table: ir.Table) -> None:
        self._client.command(f"DROP TABLE IF EXISTS {quote(table.get_name())}")


def _ch_type(dtype: pl.DataType) -> str:
    """The ClickHouse type of a storable polars dtype (see `_sql.storable`)."""
    if isinstance(dtype, pl.Decimal):
        return f"Decimal({dtype.precision or 38}, {dtype.scale})"
    if isinstance(dtype, pl.Datetime):
        return "DateTime64(6, 'UTC')" if dtype.time_zone else "DateTime64(6)"
    return _CH_TYPES[type(dtype)]


_CH_TYPES: dict[type[pl.DataType], str] = {
    pl.String: "String",
    pl.Boolean: "Bool",
    pl.Int8: "Int8",
    pl.Int16: "Int16",
    pl.Int32: "Int32",
    pl.Int64: "Int64",
    pl.UInt8: "UInt8",
    pl.UInt16: "UInt16",
    pl.UInt32: "UInt32",
    pl.Float32: "Float32",
    pl.Float64: "Float64",
    pl.Date: "Date32",
}
