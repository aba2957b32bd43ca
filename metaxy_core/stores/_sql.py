"""SQLStore: feature metadata in a SQL database through Ibis; increments computed inside it.

Each feature is an append-only table named after it (`FeatureKey.table_name`), beside the
system tables. Resolving an increment builds Ibis expressions (provenance, the latest row
per sample, the new/stale/orphaned diff) that the database runs; only the increment is
collected. Tested on PostgreSQL; written for ClickHouse too (see README: how it is tested).

A database keeps fewer types than polars, so the polars type each column was written with
is recorded in `metaxy_system__sql_columns`, and rows read back get it again: nested
values (lists, structs) and bytes are kept as JSON or hex text, small integers in the
database's integer types.
"""

# Ibis annotates many of its functions partially: unknown types from it are expected here.
# pyright: reportUnknownMemberType=false, reportUnknownVariableType=false
# pyright: reportUnknownArgumentType=false

import threading
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import ibis
import narwhals as nw
import polars as pl
import pyarrow as pa
from ibis.backends import BaseBackend

from metaxy_core._errors import StoreError
from metaxy_core._graph import FeatureGraph
from metaxy_core.stores._base import MetadataStore
from metaxy_core.stores._sql_engine import DIALECTS, Dialect, IbisEngine, check_hash_support
from metaxy_core.stores._sql_tables import ClickHouseTables, PostgresTables, Tables
from metaxy_core.versioning._hashing import HashSettings

COLUMNS_TABLE = "metaxy_system__sql_columns"
_COLUMNS_SCHEMA: dict[str, pl.DataType] = {
    "table_name": pl.String(),
    "column_name": pl.String(),
    "dtype": pl.String(),
}
_SCHEMES = {"postgres": "postgres", "postgresql": "postgres", "clickhouse": "clickhouse"}
_TABLES: dict[str, type[Tables]] = {"postgres": PostgresTables, "clickhouse": ClickHouseTables}


class SQLStore(MetadataStore):
    """Feature metadata in a SQL database (PostgreSQL, ClickHouse) through an Ibis connection.

    Provenance, the latest row per sample and the new/stale/orphaned diff are Ibis
    expressions executed by the database; only the increment comes back to Python. Row
    hashes are the database's own functions: md5 and sha256 everywhere, xxh3_64 on
    ClickHouse. A store whose recorded hash algorithm the database lacks is refused.

    Writes are one transaction on PostgreSQL (appends to one table are serialised by an
    advisory lock, so concurrent writers from several processes lose nothing); on
    ClickHouse a write is one INSERT block.

    Args:
        connection: a URL (``postgresql://user:pw@host:5432/db``, ``clickhouse://...``) or
            a connected Ibis backend (``ibis.postgres.connect(...)``); a URL's connection
            is closed with the store, a backend passed in is left open.
        graph: the feature graph.
        hash_settings: row hash settings; default: adopt the recorded ones (md5 if new,
            or xxh3_64 where the database has it).

    Raises:
        StoreError: the connection fails or names a database other than PostgreSQL or
            ClickHouse.
        HashSettingsMismatchError: `hash_settings` differ from the recorded ones, or the
            database cannot compute the recorded algorithm.

    Example:
        >>> with SQLStore("postgresql://localhost/metadata", graph) as store:  # doctest: +SKIP
        ...     increment = store.resolve_update("crop")
    """

    def __init__(
        self,
        connection: str | BaseBackend,
        graph: FeatureGraph,
        *,
        hash_settings: HashSettings | None = None,
    ) -> None:
        super().__init__(graph, hash_settings=hash_settings)
        self.uri = _redacted(connection) if isinstance(connection, str) else None
        self.con = _connect(connection)
        self._owns_connection = isinstance(connection, str)
        try:
            dialect = _dialect(self.con)
            if hash_settings is None and self.hash_settings.algorithm not in dialect.hashes:
                self.hash_settings = HashSettings("md5")
            self._sql = _TABLES[dialect.name](self.con)
            self.engine = IbisEngine(
                dialect,
                upload=lambda rows: self._sql.upload(storable(rows, dialect)),
                materialize=self._sql.materialize,
                drop=self._sql.drop,
            )
            self._dialect = dialect
            self._known: set[str] = set()
            self._types: dict[str, dict[str, pl.DataType]] = {}
            self._thread_lock = threading.RLock()
            self._open()
            check_hash_support(dialect, self.hash_settings, where=f"SQLStore on {dialect.name}")
        except BaseException:
            self._close()
            raise

    # -- primitives --------------------------------------------------------------------------

    def _exists(self, table: str) -> bool:
        if table in self._known:
            return True
        if self._sql.exists(table):
            self._known.add(table)
            return True
        return False

    def _scan(self, table: str) -> nw.LazyFrame[Any]:
        return nw.from_native(self.con.table(table))

    def _append(self, table: str, rows: pl.DataFrame) -> None:
        with self._thread_lock, self._sql.transaction():
            self._sql.lock_until_commit(table)
            self._append_locked(table, rows)
        self._known.add(table)

    def _append_locked(self, table: str, rows: pl.DataFrame) -> None:
        """Create the table or add its missing columns, record their types, insert the rows."""
        recorded = self._recorded_types(table)
        typed = rows.cast(
            {c: recorded.get(c, pl.String()) for c, t in rows.schema.items() if t == pl.Null}
        )
        encoded = storable(typed, self._dialect)
        if not self._sql.exists(table):
            self._sql.create(table, encoded.schema)
            new = list(typed.columns)
        else:
            present = set(self._sql.columns(table))
            new = [c for c in typed.columns if c not in present]
            self._sql.add_columns(table, {c: encoded.schema[c] for c in new})
        self._record_types(table, {c: typed.schema[c] for c in new})
        self._sql.insert(table, encoded)

    def _create_if_absent(self, table: str, rows: pl.DataFrame) -> bool:
        with self._thread_lock, self._sql.transaction():
            self._sql.lock_until_commit(table)
            if self._sql.exists(table):
                return False
            self._append_locked(table, rows)
        self._known.add(table)
        return True

    def _hard_delete(self, table: str, ids: pl.DataFrame) -> None:
        with self._thread_lock, self._sql.transaction():
            self._sql.lock_until_commit(table)
            self._sql.delete_ids(table, storable(ids, self._dialect))

    @contextmanager
    def _locked(self, table: str) -> Generator[None]:
        with super()._locked(table), self._sql.lock(table):
            yield

    def _restore_types(self, table: str, rows: pl.DataFrame) -> pl.DataFrame:
        recorded = self._recorded_types(table)
        if any(c not in recorded for c in rows.columns):  # another process added columns
            self._types.clear()
            recorded = self._recorded_types(table)
        return restored(rows, {c: t for c, t in recorded.items() if c in rows.columns})

    def _close(self) -> None:
        engine = getattr(self, "engine", None)
        if isinstance(engine, IbisEngine):
            engine.release()
        if getattr(self, "_owns_connection", False):
            self.con.disconnect()

    # -- recorded column types -----------------------------------------------------------------

    def _recorded_types(self, table: str) -> dict[str, pl.DataType]:
        if not self._types and self._sql.exists(COLUMNS_TABLE):
            rows = self.con.table(COLUMNS_TABLE).to_polars()
            for name, column, dtype in rows.iter_rows():
                self._types.setdefault(name, {})[column] = decode_dtype(dtype)
        return self._types.get(table, {})

    def _record_types(self, table: str, types: Mapping[str, pl.DataType]) -> None:
        """Record the polars types of new columns, in the transaction that adds them."""
        if not types:
            return
        rows = pl.DataFrame(
            {
                "table_name": [table] * len(types),
                "column_name": list(types),
                "dtype": [encode_dtype(t) for t in types.values()],
            },
            schema=_COLUMNS_SCHEMA,
        )
        self._sql.lock_until_commit(COLUMNS_TABLE)
        if not self._sql.exists(COLUMNS_TABLE):
            self._sql.create(COLUMNS_TABLE, _COLUMNS_SCHEMA)
        self._sql.insert(COLUMNS_TABLE, rows)
        self._types.setdefault(table, {}).update(types)


# -- how values are kept -----------------------------------------------------------------------


def storable(rows: pl.DataFrame, dialect: Dialect) -> pl.DataFrame:
    """Rows in types the database keeps: nested values as JSON text, bytes as hex, others cast.

    Datetimes are kept in microseconds (the unit ids must have); times, durations and
    other datetime units as their integer physical value; all-null columns as text.
    """
    exprs: list[pl.Expr] = []
    for column, dtype in rows.schema.items():
        value = pl.col(column)
        if isinstance(dtype, pl.Binary):
            exprs.append(value.bin.encode("hex"))
        elif isinstance(dtype, dialect.as_text):
            # A struct of one field encodes any nested value; its '{"v":' and '}' are cut.
            encoded = pl.struct(value.alias("v")).struct.json_encode()
            exprs.append(encoded.str.slice(5).str.head(-1).alias(column))
        elif isinstance(dtype, pl.Datetime) and dtype.time_unit != "us":
            exprs.append(
                value.dt.cast_time_unit("us") if dtype.time_unit == "ms" else value.to_physical()
            )
        elif isinstance(dtype, (pl.Time, pl.Duration)) or dtype == pl.UInt64:
            exprs.append(value.to_physical().cast(pl.Int64))
        elif isinstance(dtype, (pl.Categorical, pl.Enum, pl.Null)):
            exprs.append(value.cast(pl.String))
    return rows.with_columns(exprs) if exprs else rows


def restored(rows: pl.DataFrame, types: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Rows read back, in the types they were written with (inverse of `storable`)."""
    exprs: list[pl.Expr] = []
    for column, dtype in types.items():
        actual = rows.schema[column]
        if actual == dtype:
            continue
        value = pl.col(column)
        if actual == pl.String and isinstance(dtype, pl.Binary):
            exprs.append(value.str.decode("hex"))
        elif actual == pl.String and isinstance(dtype, (pl.Struct, pl.List, pl.Array)):
            exprs.append(value.str.json_decode(dtype))
        else:
            exprs.append(value.cast(dtype))
    return rows.with_columns(exprs) if exprs else rows


def encode_dtype(dtype: pl.DataType) -> str:
    """A polars dtype as text: the Arrow IPC schema of one field (stable across versions)."""
    arrow_schema = pl.DataFrame(schema={"c": dtype}).to_arrow().schema
    return cast(bytes, arrow_schema.serialize().to_pybytes()).hex()


def decode_dtype(text: str) -> pl.DataType:
    """Inverse of `encode_dtype`."""
    schema = pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(text)))  # pyright: ignore[reportUnknownMemberType]
    frame = pl.from_arrow(schema.empty_table())  # pyright: ignore[reportUnknownMemberType]
    assert isinstance(frame, pl.DataFrame)
    return frame.schema["c"]


# -- connections -------------------------------------------------------------------------------


def _connect(connection: str | BaseBackend) -> BaseBackend:
    if isinstance(connection, BaseBackend):
        return connection
    if not isinstance(connection, str):
        raise StoreError(
            f"SQLStore needs a URL or an Ibis backend, got {type(connection).__name__}."
        )
    scheme = urlsplit(connection).scheme.lower()
    if scheme not in _SCHEMES:
        raise StoreError(
            f"SQLStore cannot open {_redacted(connection)!r}: use a postgresql:// or "
            "clickhouse:// URL, or pass a connected Ibis backend."
        )
    try:
        return ibis.connect(connection)
    except Exception as exc:
        raise StoreError(
            f"SQLStore could not connect to {_redacted(connection)!r}: {type(exc).__name__}: {exc}"
        ) from exc


def _dialect(con: BaseBackend) -> Dialect:
    dialect = DIALECTS.get(con.name)
    if dialect is None:
        raise StoreError(
            f"SQLStore supports PostgreSQL and ClickHouse; this Ibis backend is {con.name!r}. "
            "Use DuckDBStore for DuckDB."
        )
    return dialect


def _redacted(url: str) -> str:
    """The URL without its password (error messages and `uri` never show it)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
