"""The storage seam: the few primitives a backend implements, and nothing about versions.

A store is the versioning logic of `MetadataStore` (`_base`) standing on these primitives.
A new backend is one module: a `MetadataStore` subclass that implements the abstract
methods below and sets `engine` (the compute engine its scans run in, see
`metaxy_core.versioning._engine`). Nothing here knows about features, provenance or
graphs: a table is a name, rows are polars frames, scans are lazy narwhals frames.

Tables are append-only logs. Feature tables are named after their feature
(`FeatureKey.table_name`); the system tables (`metaxy_system__*`: hash settings, graph
snapshots, batch manifests) go through the same primitives. Every row carries a
`metaxy_write_id`; the latest row per sample is the one with the greatest write id.
"""

import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core.versioning._engine import Engine


class Storage(ABC):
    """Storage primitives every backend implements: append, scan, delete, lock.

    Contract (the store contract pack in `tests/stores/` checks it on every backend):

    - `_append` is atomic: after a crash or an error, all of `rows` is there or none.
      It creates a missing table and adds columns the table lacks; it never changes a
      stored column's type (the versioning layer refuses such writes before appending).
    - `_scan` sees every committed row, whichever process wrote it.
    - `_create_if_absent` lets exactly one of several racing creators win.
    - `_locked` serialises a read-then-append step (stamping a write, soft-delete markers)
      against other writers, as far as the backend can (see each backend).
    """

    engine: Engine
    # True when `_scan_latest` reads a stored current view (no need to compute it once per
    # resolve); False when it derives the latest rows from the log.
    stores_current_view: bool = False

    @abstractmethod
    def _exists(self, table: str) -> bool:
        """True if `table` was ever written."""

    @abstractmethod
    def _scan(self, table: str) -> nw.LazyFrame[Any]:
        """Every row of `table`, lazily, in the store's engine (the table exists)."""

    @abstractmethod
    def _append(self, table: str, rows: pl.DataFrame) -> None:
        """Append `rows` atomically, creating the table or adding new columns as needed."""

    @abstractmethod
    def _hard_delete(self, table: str, ids: pl.DataFrame) -> None:
        """Physically remove every row whose id columns match a row of `ids`."""

    def _scan_latest(self, table: str, ids: Sequence[str]) -> nw.LazyFrame[Any]:
        """The latest row per sample (soft-deleted markers included).

        Backends that keep a current view override this.
        """
        return self.engine.latest(self._scan(table), ids, C.WRITE_ID)

    def _scan_live(self, table: str, ids: Sequence[str]) -> nw.LazyFrame[Any]:
        """The latest row per sample, soft-deleted samples left out."""
        return self._scan_latest(table, ids).filter(nw.col(C.DELETED_AT).is_null())

    def _log_position(self, table: str) -> str | None:
        """An opaque mark of how far `table`'s log reaches now ("" if it was never written).

        None: this backend keeps no positions, and increments always take the full path.
        Watermarks (`_watermarks`) keep these marks; `_scan_since` reads past them.
        """
        del table
        return None

    def _log_rows(self, tables: Sequence[str]) -> int | None:
        """How many rows the logs of `tables` hold in all, read from metadata (no scan).

        A table never written counts 0. None: unknown on this backend (resolves then never
        count as small inputs).
        """
        del tables
        return None

    def _scan_since(self, table: str, position: str) -> nw.LazyFrame[Any] | None:
        """The rows appended to `table` after `position` (from `_log_position`), lazily.

        None when the rows since cannot be told apart any more (rows removed or rewritten
        since: a compaction, a hard delete): the caller then takes the full path.
        """
        del table, position
        return None

    def _create_if_absent(self, table: str, rows: pl.DataFrame) -> bool:
        """Create `table` holding `rows` unless it exists; True if this call created it.

        Backends that several writers share make this one atomic step (one creator wins).
        """
        if self._exists(table):
            return False
        try:
            self._append(table, rows)
        except Exception:
            if self._exists(table):  # another writer created it first
                return False
            raise
        return True

    @contextmanager
    def _locked(self, table: str) -> Generator[None]:
        """Hold `table`'s write lock for a read-then-append step.

        The default serialises the threads of this process; backends shared by several
        processes override it where they can lock (or rely on their commit protocol).
        """
        with _process_lock(self, table):
            yield

    def _restore_types(self, table: str, rows: pl.DataFrame) -> pl.DataFrame:
        """Rows of `table` as collected from a scan, in the types they were written with.

        Backends that keep some types in another form (a SQL database: structs as JSON
        text) restore them here; the default returns the rows unchanged.
        """
        del table
        return rows

    def _close(self) -> None:  # noqa: B027 - optional hook: backends holding nothing skip it
        """Release resources."""


_LOCKS_GUARD = threading.Lock()
_LOCKS: "weakref.WeakKeyDictionary[Storage, dict[str, threading.RLock]]" = (
    weakref.WeakKeyDictionary()
)


def _process_lock(storage: Storage, table: str) -> threading.RLock:
    """One re-entrant lock per storage object and table."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(storage, {}).setdefault(table, threading.RLock())
