"""The few operations narwhals cannot express portably, implemented once per engine."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import narwhals as nw
import polars as pl

from metaxy_core._filters import Filter
from metaxy_core.versioning._hashing import HashSettings


@dataclass(frozen=True)
class Composition:
    """A hash input: the literal `head`, then per part its literal label and its value.

    A part's value is a string column, written as it is, or with `framed` as
    `<UTF-8 byte length>:<value>` (for arbitrary text, see `_provenance`). A part whose
    value is null is left out; with `all_or_null`, a null value makes the whole input null.
    """

    head: str
    parts: tuple[tuple[str, str], ...]  # (label, column)
    framed: bool = False
    all_or_null: bool = False


class Engine(Protocol):
    """What a store's compute engine supplies to the engine-agnostic versioning code."""

    def hash(
        self, frame: nw.LazyFrame[Any], columns: Mapping[str, str], settings: HashSettings
    ) -> nw.LazyFrame[Any]:
        """Add `out` columns holding the row hash of each string column `in`."""
        ...

    def hash_compositions(
        self, frame: nw.LazyFrame[Any], inputs: Mapping[str, Composition], settings: HashSettings
    ) -> nw.LazyFrame[Any]:
        """Add `out` columns holding the row hash of each `Composition` (in one step)."""
        ...

    def join_using(
        self,
        left: nw.LazyFrame[Any],
        right: nw.LazyFrame[Any],
        on: Sequence[str],
        *,
        how: Literal["inner", "left"],
    ) -> nw.LazyFrame[Any]:
        """Join on same-named columns, kept once (the other columns' names all differ)."""
        ...

    def full_join(
        self,
        left: nw.LazyFrame[Any],
        right: nw.LazyFrame[Any],
        left_on: Sequence[str],
        right_on: Sequence[str],
    ) -> nw.LazyFrame[Any]:
        """Full outer join keeping every column of both sides (their names all differ)."""
        ...

    def sorted_concat(
        self, frame: nw.LazyFrame[Any], by: Sequence[str], columns: Mapping[str, str]
    ) -> nw.LazyFrame[Any]:
        """Group by `by`; each `out` column joins its group's `in` strings, sorted, with ','."""
        ...

    def compose(
        self, frame: nw.LazyFrame[Any], inputs: Mapping[str, Composition]
    ) -> nw.LazyFrame[Any]:
        """Add `out` string columns, each composed as its `Composition` says."""
        ...

    def id_text(self, frame: nw.LazyFrame[Any], columns: Mapping[str, str]) -> nw.LazyFrame[Any]:
        """Add `out` columns holding the canonical text of each id column `in`.

        The text is the one `metaxy_core._canonical` defines for the column's dtype.
        """
        ...

    def filter(self, frame: nw.LazyFrame[Any], flt: Filter) -> nw.LazyFrame[Any]:
        """Keep the rows where a filter holds (see `apply_filters`, which checks it first)."""
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


def apply_filters(
    engine: Engine, frame: nw.LazyFrame[Any], filters: Sequence[Filter], *, where: str
) -> nw.LazyFrame[Any]:
    """Keep the rows where every filter holds.

    Every filter is checked against the frame's columns before the engine sees any of
    them, so an unknown column or a kind mismatch is the same `SpecError` on every store.

    Raises:
        SpecError: naming the filter, `where` and the offending column.
    """
    if not filters:
        return frame
    schema = frame.collect_schema()
    for flt in filters:
        flt.check(schema, where=where)
    for flt in filters:
        frame = engine.filter(frame, flt)
    return frame
