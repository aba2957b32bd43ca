"""The few operations narwhals cannot express portably, implemented once per engine."""

from collections.abc import Mapping, Sequence
from typing import Protocol

import narwhals as nw
import polars as pl

from metaxy_core.versioning._hashing import HashSettings


class Engine(Protocol):
    """What a store's compute engine supplies to the engine-agnostic versioning code."""

    def hash(
        self, frame: nw.LazyFrame, columns: Mapping[str, str], settings: HashSettings
    ) -> nw.LazyFrame:
        """Add `out` columns holding the row hash of each string column `in`."""
        ...

    def sorted_concat(
        self, frame: nw.LazyFrame, by: Sequence[str], columns: Mapping[str, str]
    ) -> nw.LazyFrame:
        """Group by `by`; each `out` column joins its group's `in` strings, sorted, with ','."""
        ...

    def filter_sql(self, frame: nw.LazyFrame, predicate: str) -> nw.LazyFrame:
        """Keep rows matching a SQL predicate."""
        ...

    def latest(self, frame: nw.LazyFrame, ids: Sequence[str], order_by: str) -> nw.LazyFrame:
        """One row per `ids`: the one with the greatest `order_by`."""
        ...

    def lazy(self, frame: pl.DataFrame) -> nw.LazyFrame:
        """Bring a polars frame into this engine."""
        ...

    def cache(self, frame: nw.LazyFrame) -> nw.LazyFrame:
        """Compute `frame` once, inside the engine, for several queries to share."""
        ...

    def release(self) -> None:
        """Drop what `cache` holds."""
        ...
