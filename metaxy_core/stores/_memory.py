"""MemoryStore: polars frames in a dict. The reference implementation and the test double."""

from collections.abc import Sequence
from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._graph import FeatureGraph
from metaxy_core.stores._base import MetadataStore
from metaxy_core.versioning._hashing import HashSettings
from metaxy_core.versioning._polars_engine import PolarsEngine


class MemoryStore(MetadataStore):
    """An in-memory store: the reference every other store is compared against.

    Example:
        >>> store = MemoryStore(graph)  # doctest: +SKIP
    """

    stores_current_view = True

    def __init__(self, graph: FeatureGraph, *, hash_settings: HashSettings | None = None) -> None:
        super().__init__(graph, hash_settings=hash_settings)
        self.engine = PolarsEngine()
        self._tables: dict[str, pl.DataFrame] = {}
        # The current view (latest row per sample) is kept next to the log so reads stay
        # flat however often samples are rewritten. Keyed by table: (id columns, rows).
        self._current_view: dict[str, tuple[list[str], pl.DataFrame]] = {}
        # Tables written by one write so far: one row per sample (a write refuses duplicate
        # ids), so the log is the current view without checking (1M ids: ~0.1 s).
        self._written_once: set[str] = set()
        self._open()

    def _exists(self, table: str) -> bool:
        return table in self._tables

    def _scan(self, table: str) -> nw.LazyFrame[Any]:
        return nw.from_native(self._tables[table].lazy())

    def _scan_latest(self, table: str, ids: Sequence[str]) -> nw.LazyFrame[Any]:
        cached = self._current_view.get(table)
        if cached is None or cached[0] != list(ids):
            cached = self._current_view[table] = (list(ids), self._current_of(table, ids))
        return nw.from_native(cached[1].lazy())

    def _current_of(self, table: str, ids: Sequence[str]) -> pl.DataFrame:
        log = self._tables[table]
        if table in self._written_once or log.select(ids).is_unique().all():
            return log
        return self.engine.latest(self._scan(table), ids, C.WRITE_ID).collect().to_native()

    def _append(self, table: str, rows: pl.DataFrame) -> None:
        old = self._tables.get(table)
        if old is None and _one_write(rows):
            self._written_once.add(table)
        else:
            self._written_once.discard(table)
        self._tables[table] = (
            rows if old is None else pl.concat([old, rows], how="diagonal_relaxed")
        )
        cached = self._current_view.pop(table, None)
        if old is None:  # a feature table's first write: its view now, not at the first read
            ids = self._id_columns(table)
            if ids is not None:
                self._current_view[table] = (ids, self._current_of(table, ids))
            return
        if cached is None or rows.is_empty():
            return
        ids, current = cached
        # Only newer writes can be folded in; older ones (copies) force a rebuild.
        if current.is_empty() or rows[C.WRITE_ID].min() > current[C.WRITE_ID].max():  # type: ignore[operator]
            kept = current.join(rows.select(ids), on=ids, how="anti")
            self._current_view[table] = (ids, pl.concat([kept, rows], how="diagonal_relaxed"))

    def _log_position(self, table: str) -> str | None:
        # The log only grows at its end (a hard delete aside): a row count, checked by the
        # write id of the last row counted, which a hard delete would move.
        log = self._tables.get(table)
        if log is None or log.is_empty():
            return ""
        return f"{log.height}:{log[C.WRITE_ID][-1]}"

    def _log_rows(self, tables: Sequence[str]) -> int | None:
        return sum(self._tables[t].height for t in tables if t in self._tables)

    def _scan_since(self, table: str, position: str) -> nw.LazyFrame[Any] | None:
        log = self._tables.get(table)
        if not position:
            return None if log is None else nw.from_native(log.lazy())
        height, _, last = position.partition(":")
        seen = int(height)
        if log is None or log.height < seen or log[C.WRITE_ID][seen - 1] != last:
            return None
        return nw.from_native(log.slice(seen).lazy())

    def _hard_delete(self, table: str, ids: pl.DataFrame) -> None:
        self._tables[table] = self._tables[table].join(ids, on=ids.columns, how="anti")
        self._current_view.pop(table, None)


def _one_write(rows: pl.DataFrame) -> bool:
    """True if every row carries the same write id (a write's or a copied write's rows)."""
    if C.WRITE_ID not in rows.columns or rows.is_empty():
        return False
    write_ids = rows.get_column(C.WRITE_ID)
    return write_ids.null_count() == 0 and write_ids.min() == write_ids.max()
