"""The few operations narwhals cannot express portably, implemented once per engine."""

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import narwhals as nw
import polars as pl

from metaxy_core.versioning._hashing import HashSettings


class Engine(Protocol):
    """What a store's compute engine supplies to the engine-agnostic versioning code."""

    def hash(
        self, frame: nw.LazyFrame[Any], columns: Mapping[str, str], settings: HashSettings
    ) -> nw.LazyFrame[Any]:
        """Add `out` columns holding the row hash of each string column `in`."""
        ...

    def sorted_concat(
        self, frame: nw.LazyFrame[Any], by: Sequence[str], columns: Mapping[str, str]
    ) -> nw.LazyFrame[Any]:
        """Group by `by`; each `out` column joins its group's `in` strings, sorted, with ','."""
        ...

    def filter_sql(self, frame: nw.LazyFrame[Any], predicate: str) -> nw.LazyFrame[Any]:
        """Keep rows matching a SQL predicate."""
        ...

    def latest(
        self, frame: nw.LazyFrame[Any], ids: Sequence[str], order_by: str
    ) -> nw.LazyFrame[Any]:
        """One row per `ids`: the one with the greatest `order_by`."""
        ...

    def lazy(self, frame: pl.DataFrame) -> nw.LazyFrame[Any]:
        """Bring a polars frame into this engine."""
        ...

    def cache(self, frame: nw.LazyFrame[Any]) -> nw.LazyFrame[Any]:
        """Compute `frame` once, inside the engine, for several queries to share."""
        ...

    def release(self) -> None:
        """Drop what `cache` holds."""
        ...
