"""DuckDBStore: the embedded default, one database file, increments computed as SQL inside it."""

import re
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import duckdb
import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._errors import StoreError, StoreLockedError
from metaxy_core._graph import FeatureGraph
from metaxy_core.stores._base import MetadataStore
from metaxy_core.stores._duckdb_engine import DuckDBEngine, quote, to_arrow
from metaxy_core.versioning._hashing import HashSettings

# Latest row per sample of every feature table, maintained in the same transaction as the log.
CURRENT_SCHEMA = "metaxy_current"
_STAGED = "__metaxy_staged"
_LOCK_RETRY_SECONDS = 0.1
# DuckDB names the process holding a file: "Conflicting lock is held in /usr/bin/python (PID 7)".
_LOCK_HOLDER = re.compile(r"lock is held in .*?\(PID \d+\)")


class DuckDBStore(MetadataStore):
    """Feature metadata in a DuckDB database file; `resolve_update` runs inside DuckDB.

    Each feature has an append-only log table (`FeatureKey.table_name`, full history) and a
    current table (`metaxy_current.<table>`: the latest row per sample, soft-deleted markers
    included), both changed in one transaction per write. Reads and increments use the
    current table, so their cost follows the number of samples, not the number of rewrites;
    `history()` reads the log. Only the increment is collected into polars.

    Concurrency, as DuckDB locks files: one process at a time may open the file to write,
    and while it holds it no other process can open it at all, not even `read_only`;
    several `read_only` processes may share it, but then no writer gets in. Opening a held
    file is retried for `lock_timeout` seconds, then `StoreLockedError` names the holder.
    Close the store (or use it as a context manager) to let others in. To read while
    Dagster runs write (a notebook), use `DuckDBStore.snapshot(path, graph)`: it holds the
    file only while copying it into memory, so it never stalls a run or a sensor.

    Args:
        path: the database file (created if missing, unless `read_only`).
        graph: the feature graph.
        hash_settings: row hash settings; default: adopt the recorded ones (xxh3_64 if new).
        lock_timeout: seconds to keep retrying while another process holds the file.
        read_only: open without write access (several read-only processes may share a file).
        config: DuckDB configuration options for the connection (`threads`, `memory_limit`,
            ...; e.g. a `dagster_duckdb.DuckDBResource`'s `connection_config`).

    Raises:
        StoreLockedError: the file stayed locked for `lock_timeout` seconds.
        HashSettingsMismatchError: `hash_settings` differ from the recorded ones.

    Example:
        >>> with DuckDBStore("metadata.duckdb", graph) as store:  # doctest: +SKIP
        ...     increment = store.resolve_update("crop")
    """

    stores_current_view = True

    def __init__(
        self,
        path: str | Path,
        graph: FeatureGraph,
        *,
        hash_settings: HashSettings | None = None,
        lock_timeout: float = 10.0,
        read_only: bool = False,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(graph, hash_settings=hash_settings)
        self.path = Path(path)
        self.read_only = read_only
        self._setup(
            _connect(self.path, read_only=read_only, lock_timeout=lock_timeout, config=config)
        )

    @classmethod
    def snapshot(
        cls,
        path: str | Path,
        graph: FeatureGraph,
        *,
        hash_settings: HashSettings | None = None,
        lock_timeout: float = 10.0,
    ) -> "DuckDBStore":
        """A read-only store over an in-memory copy of the file as it is now.

        The file is locked only while it is copied (retried for `lock_timeout` seconds if a
        writer holds it), so reading from a notebook never blocks Dagster's runs and
        sensors. Later writes to the file are not seen: take a new snapshot.

        Args:
            path: the database file.
            graph: the feature graph.
            hash_settings: as for `DuckDBStore` (default: adopt the recorded ones).
            lock_timeout: seconds to keep retrying while a writer holds the file.

        Returns:
            A `read_only` store; its `path` is the file it was copied from.

        Raises:
            StoreError: the file does not exist or is not a DuckDB database.
            StoreLockedError: a writer held the file for `lock_timeout` seconds.

        Example:
            >>> with DuckDBStore.snapshot("metadata.duckdb", graph) as store:  # doctest: +SKIP
            ...     store.read("crop")
        """
        source = Path(path)
        store = cls.__new__(cls)
        MetadataStore.__init__(store, graph, hash_settings=hash_settings)
        store.path = source
        store.read_only = True
        store._setup(_copy_into_memory(source, lock_timeout=lock_timeout))
        return store

    def _setup(self, con: duckdb.DuckDBPyConnection) -> None:
        """Configure a fresh connection, then check settings and graph (closes it on failure)."""
        self._con = con
        self._lock = threading.RLock()
        self._tables: set[tuple[str, str]] = set()  # tables seen to exist (never dropped)
        self._exec("SET TimeZone = 'UTC'")
        # Row hashes are random strings: DuckDB's default compression analysis spends about 3x
        # the insert time on them for nothing; dictionary still packs repetitive columns.
        self._exec("SET force_compression = 'dictionary'")
        self.engine = DuckDBEngine(self._con)
        try:
            self._open()
        except BaseException:
            self._con.close()
            raise

    # -- primitives ------------------------------------------------------------------------

    def _exists(self, table: str) -> bool:
        return self._table_exists("main", table)

    def _table_exists(self, schema: str, table: str) -> bool:
        if (schema, table) in self._tables:
            return True
        # Every table in one query: a resolve asks about several (log and current tables).
        found = self._exec(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT temporary"
        )
        self._tables.update((str(s), str(t)) for s, t in found)
        return (schema, table) in self._tables

    def _exec(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Run a statement to completion (DuckDB refuses new work while a result is pending)."""
        return self._con.execute(sql, list(params)).fetchall()

    def _scan(self, table: str) -> nw.LazyFrame[Any]:
        return nw.from_native(self._con.sql(f"SELECT * FROM main.{quote(table)}"))

    def _scan_latest(self, table: str, ids: Sequence[str]) -> nw.LazyFrame[Any]:
        if not self._table_exists(CURRENT_SCHEMA, table):  # a file written before current tables
            return super()._scan_latest(table, ids)
        return nw.from_native(self._con.sql(f"SELECT * FROM {CURRENT_SCHEMA}.{quote(table)}"))

    def _scan_live(self, table: str, ids: Sequence[str]) -> nw.LazyFrame[Any]:
        if not self._table_exists(CURRENT_SCHEMA, table):
            return super()._scan_live(table, ids)
        # One statement: each relation step binds the whole query again (~0.5 ms a step).
        live = f"{quote(C.DELETED_AT)} IS NULL"
        return nw.from_native(
            self._con.sql(f"SELECT * FROM {CURRENT_SCHEMA}.{quote(table)} WHERE {live}")
        )

    def _append(self, table: str, rows: pl.DataFrame) -> None:
        ids = self._id_columns(table)
        with self._staged(rows), self._transaction():
            self._insert("main", table)
            if ids is not None:
                self._refresh_current(table, rows, ids)

    def _log_position(self, table: str) -> str | None:
        # One process writes the file at a time and rows are only appended to a log (a hard
        # delete voids the watermarks that could read past it), so its row count is its
        # position, and the rows appended since have row ids at or past it. count(*) reads
        # the table's statistics: no scan.
        if not self._exists(table):
            return ""
        return str(self._exec(f"SELECT count(*) FROM main.{quote(table)}")[0][0])

    def _log_rows(self, tables: Sequence[str]) -> int | None:
        counts = [f"(SELECT count(*) FROM main.{quote(t)})" for t in tables if self._exists(t)]
        if not counts:
            return 0
        # One statement for every table; count(*) reads the tables' statistics: no scan.
        return int(cast(int, self._exec(f"SELECT {' + '.join(counts)}")[0][0]))

    def _scan_since(self, table: str, position: str) -> nw.LazyFrame[Any] | None:
        if not position:
            return self._scan(table) if self._exists(table) else None
        if int(self._log_position(table) or 0) < int(position):  # rows removed since
            return None
        # Row ids skip whole row groups: only the appended ones are read.
        rows = f"SELECT * FROM main.{quote(table)} WHERE rowid >= {int(position)}"
        return nw.from_native(self._con.sql(rows))

    def _hard_delete(self, table: str, ids: pl.DataFrame) -> None:
        with self._staged(ids), self._transaction():
            for schema in ("main", CURRENT_SCHEMA):
                if self._table_exists(schema, table):
                    self._exec(
                        f"DELETE FROM {schema}.{quote(table)} AS c USING {quote(_STAGED)} AS s "
                        f"WHERE {_same_ids(ids.columns)}"
                    )

    def _close(self) -> None:
        self._con.close()

    # -- helpers ---------------------------------------------------------------------------

    @contextmanager
    def _staged(self, rows: pl.DataFrame) -> Generator[None]:
        """Expose `rows` to SQL as `_STAGED`, outside the transaction that reads them.

        Unregistering inside an aborted transaction fails and would mask the write's real
        error, so the transaction ends (rolled back) before the rows are unregistered.
        """
        self._con.register(_STAGED, to_arrow(rows))
        try:
            yield
        finally:
            self._con.unregister(_STAGED)

    @contextmanager
    def _transaction(self) -> Generator[None]:
        if self.read_only:
            raise StoreError(
                f"DuckDB store {self.path} was opened read_only; "
                "open it without read_only to write."
            )
        with self._lock:
            known = set(self._tables)
            self._con.begin()
            try:
                yield
            except BaseException:
                self._con.rollback()
                self._tables = known  # tables created in the rolled-back transaction are gone
                raise
            self._con.commit()

    def _insert(self, schema: str, table: str, source: str = _STAGED) -> None:
        """Append `source` to `schema.table`, creating it or adding missing columns."""
        target = f"{schema}.{quote(table)}"
        if not self._table_exists(schema, table):
            self._exec(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            self._exec(f"CREATE TABLE {target} AS SELECT * FROM {quote(source)}")
            return
        existing = set(self._con.sql(f"SELECT * FROM {target} LIMIT 0").columns)
        staged = self._con.sql(f"SELECT * FROM {quote(source)} LIMIT 0")
        for column, dtype in zip(staged.columns, staged.types, strict=True):
            if column not in existing:
                self._exec(f"ALTER TABLE {target} ADD COLUMN {quote(column)} {dtype}")
        self._exec(f"INSERT INTO {target} BY NAME SELECT * FROM {quote(source)}")

    def _refresh_current(self, table: str, rows: pl.DataFrame, ids: list[str]) -> None:
        """Fold the appended rows into the current table: newer write ids replace older ones."""
        if rows.select(ids).is_duplicated().any():  # copies carry history: keep each id's newest
            rows = rows.sort(C.WRITE_ID).unique(subset=ids, keep="last", maintain_order=True)
            self._con.unregister(_STAGED)
            self._con.register(_STAGED, to_arrow(rows))
        current = f"{CURRENT_SCHEMA}.{quote(table)}"
        if self._table_exists(CURRENT_SCHEMA, table):
            wid = quote(C.WRITE_ID)
            # Newer rows replace current ones; rows older than current (copies) are skipped.
            self._exec(
                f"DELETE FROM {current} AS c USING {quote(_STAGED)} AS s "
                f"WHERE {_same_ids(ids)} AND c.{wid} < s.{wid}"
            )
            self._exec(
                "CREATE OR REPLACE TEMP TABLE __metaxy_fresh AS "
                f"SELECT s.* FROM {quote(_STAGED)} AS s "
                f"ANTI JOIN {current} AS c USING ({', '.join(quote(c) for c in ids)})"
            )
            self._insert(CURRENT_SCHEMA, table, source="__metaxy_fresh")
            self._exec("DROP TABLE __metaxy_fresh")
        else:
            self._insert(CURRENT_SCHEMA, table)


def _same_ids(ids: Sequence[str]) -> str:
    return " AND ".join(f"c.{quote(c)} = s.{quote(c)}" for c in ids)


def _connect(
    path: Path, *, read_only: bool, lock_timeout: float, config: Mapping[str, Any] | None
) -> duckdb.DuckDBPyConnection:
    """Open the file, retrying while another process holds its lock."""
    if read_only and not path.exists():
        raise StoreError(f"Cannot open DuckDB store {path} read_only: the file does not exist.")
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {str(k): v for k, v in (config or {}).items()}

    def connect() -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(str(path), read_only=read_only, config=options)
        except (duckdb.InvalidInputException, duckdb.ConnectionException) as exc:
            # A bad option, or another connection of this process has the file open with
            # other options (DuckDB shares one database instance per file and process).
            raise StoreError(
                f"DuckDB refused the connection config {options} for {path}: {exc}"
            ) from exc

    return _while_locked(path, connect, lock_timeout=lock_timeout)


def _copy_into_memory(path: Path, *, lock_timeout: float) -> duckdb.DuckDBPyConnection:
    """An in-memory database holding a copy of the file's tables (the file is held briefly)."""
    if not path.is_file():
        raise StoreError(f"Cannot snapshot DuckDB store {path}: the file does not exist.")
    con = duckdb.connect(":memory:")

    def copy() -> duckdb.DuckDBPyConnection:
        con.execute(f"ATTACH {_literal(str(path))} AS metaxy_source (READ_ONLY)")
        try:
            con.execute("COPY FROM DATABASE metaxy_source TO memory")
        finally:
            con.execute("DETACH metaxy_source")
        return con

    try:
        return _while_locked(path, copy, lock_timeout=lock_timeout)
    except BaseException:
        con.close()
        raise


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _while_locked(
    path: Path, attempt: Callable[[], duckdb.DuckDBPyConnection], *, lock_timeout: float
) -> duckdb.DuckDBPyConnection:
    """Run `attempt`, retrying while another process holds the file's lock."""
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            return attempt()
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise StoreError(f"Cannot open DuckDB store {path}: {exc}") from exc
            if time.monotonic() >= deadline:
                holder = _LOCK_HOLDER.search(str(exc))
                who = f" ({holder.group(0)})" if holder else ""
                raise StoreLockedError(
                    f"DuckDB store {path} is locked by another process{who}; gave up after "
                    f"waiting {lock_timeout:g} s (lock_timeout). Close the other store, read "
                    "through DuckDBStore.snapshot(), or raise lock_timeout."
                ) from exc
            time.sleep(_LOCK_RETRY_SECONDS)
