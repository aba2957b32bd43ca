"""MemoryStore: polars frames in a dict. The reference implementation and the test double."""

import narwhals as nw
import polars as pl

from metaxy_core._graph import FeatureGraph
from metaxy_core.stores._base import MetadataStore
from metaxy_core.versioning._hashing import HashSettings
from metaxy_core.versioning._polars_engine import PolarsEngine


class MemoryStore(MetadataStore):
    """An in-memory store: the reference every other store is compared against.

    Example:
        >>> store = MemoryStore(graph)  # doctest: +SKIP
    """

    def __init__(self, graph: FeatureGraph, *, hash_settings: HashSettings | None = None) -> None:
        super().__init__(graph, hash_settings=hash_settings)
        self.engine = PolarsEngine()
        self._tables: dict[str, pl.DataFrame] = {}

    def _exists(self, table: str) -> bool:
        return table in self._tables

    def _scan(self, table: str) -> nw.LazyFrame:
        return nw.from_native(self._tables[table].lazy())

    def _append(self, table: str, rows: pl.DataFrame) -> None:
        old = self._tables.get(table)
        self._tables[table] = rows if old is None else pl.concat([old, rows], how="diagonal_relaxed")

    def _hard_delete(self, table: str, ids: pl.DataFrame) -> None:
        self._tables[table] = self._tables[table].join(ids, on=ids.columns, how="anti")
