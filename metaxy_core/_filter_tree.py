"""The filter language's tree: its nodes and the kinds of values they hold.

`_filters` builds these nodes from the parsed text (only the allowed subset has nodes);
`_filter_compile` types them against a frame's columns and translates them for each engine.
"""

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import narwhals as nw
import polars as pl

# -- nodes -------------------------------------------------------------------------------------
# Each node keeps the text it was parsed from, for error messages.


@dataclass(frozen=True)
class Node:
    """A node of a validated filter tree."""

    text: str


@dataclass(frozen=True)
class Column(Node):
    name: str


@dataclass(frozen=True)
class Literal(Node):
    """A constant; `value` is str, int, float, bool, date, datetime (naive or UTC) or None."""

    value: Any


@dataclass(frozen=True)
class Compare(Node):
    op: str  # one of = <> < <= > >=
    left: Node
    right: Node


@dataclass(frozen=True)
class Logic(Node):
    op: str  # AND or OR
    left: Node
    right: Node


@dataclass(frozen=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True)
class Is(Node):
    """`x IS NULL` (value None), `x IS TRUE`, `x IS FALSE`."""

    operand: Node
    value: bool | None


@dataclass(frozen=True)
class In(Node):
    operand: Node
    values: tuple[Literal, ...]


@dataclass(frozen=True)
class Like(Node):
    operand: Node
    pattern: str | None
    escape: str | None
    ignore_case: bool


@dataclass(frozen=True)
class Arith(Node):
    op: str  # one of + - * / // %
    left: Node
    right: Node


@dataclass(frozen=True)
class Negate(Node):
    operand: Node


@dataclass(frozen=True)
class Call(Node):
    name: str  # one of FUNCTIONS
    args: tuple[Node, ...]


FUNCTIONS = ("abs", "coalesce", "length", "lower", "round", "upper")
MAX_ROUND_DIGITS = 15

# -- kinds -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """What a value is, as far as the filter language cares."""

    name: str  # text, integer, float, boolean, date, datetime, null
    time_zone: str | None = None

    def describe(self) -> str:
        if self.name == "datetime" and self.time_zone:
            return "datetime with time zone"
        return "NULL" if self.name == "null" else self.name

    @property
    def numeric(self) -> bool:
        return self.name in ("integer", "float")


TEXT, INTEGER, FLOAT, BOOLEAN = Kind("text"), Kind("integer"), Kind("float"), Kind("boolean")
DATE, NULL = Kind("date"), Kind("null")
READABLE = "text, integer, float, boolean, date and datetime"


def kind_of(dtype: Any) -> Kind | None:
    """The kind of a column's narwhals or polars dtype (None: filters cannot read it)."""
    if isinstance(dtype, pl.DataType):
        dtype = nw.from_native(pl.Series([], dtype=dtype), series_only=True).dtype
    if dtype == nw.String:
        return TEXT
    if dtype.is_integer():
        return INTEGER
    if dtype.is_float():
        return FLOAT
    if dtype == nw.Boolean:
        return BOOLEAN
    if dtype == nw.Date:
        return DATE
    if isinstance(dtype, nw.Datetime):
        return Kind("datetime", dtype.time_zone)
    return None


def literal_kind(value: Any) -> Kind:
    """The kind of a literal's Python value."""
    match value:
        case None:
            return NULL
        case bool():
            return BOOLEAN
        case int():
            return INTEGER
        case float():
            return FLOAT
        case str():
            return TEXT
        case dt.datetime():
            return Kind("datetime", "UTC" if value.tzinfo else None)
        case dt.date():
            return DATE
        case _:
            raise TypeError(f"not a filter literal: {value!r}")


def columns_of(node: Node) -> Iterator[str]:
    """The column names a tree reads, in order of appearance (with repeats)."""
    if isinstance(node, Column):
        yield node.name
    for value in vars(node).values():
        children = cast(tuple[object, ...], value) if isinstance(value, tuple) else (value,)
        for child in children:
            if isinstance(child, Node):
                yield from columns_of(child)
