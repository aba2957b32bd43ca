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
from polars.datatypes import DataTypeClass

from metaxy_core._errors import SpecError

# -- nodes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A node of a validated filter tree (`render` gives its text back, for messages)."""


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
    """AND or OR over two or more operands (kept flat: long chains do not nest)."""

    op: str  # AND or OR
    operands: tuple[Node, ...]


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
    if isinstance(dtype, pl.DataType | DataTypeClass):  # `pl.String` the class, too
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
            raise SpecError(f"Not a filter literal: {value!r}.")


def columns_of(node: Node) -> Iterator[str]:
    """The column names a tree reads, in order of appearance (with repeats)."""
    if isinstance(node, Column):
        yield node.name
    for value in vars(node).values():
        children = cast(tuple[object, ...], value) if isinstance(value, tuple) else (value,)
        for child in children:
            if isinstance(child, Node):
                yield from columns_of(child)


def render(node: Node) -> str:
    """The node as filter text, for error messages."""
    match node:
        case Column(name=name):
            return name if name.isidentifier() else '"' + name.replace('"', '""') + '"'
        case Literal(value=value):
            return _render_literal(value)
        case Compare(op=op, left=left, right=right) | Arith(op=op, left=left, right=right):
            return f"{_nested(left)} {op} {_nested(right)}"
        case Logic(op=op, operands=operands):
            return f" {op} ".join(_nested(o) for o in operands)
        case Not(operand=operand):
            return f"NOT {_nested(operand)}"
        case Is(operand=operand, value=value):
            return f"{_nested(operand)} IS {_render_literal(value).upper()}"
        case In(operand=operand, values=values):
            shown = ", ".join(_render_literal(v.value) for v in values[:5])
            return f"{_nested(operand)} IN ({shown}{', ...' if len(values) > 5 else ''})"
        case Like(operand=operand, pattern=pattern, escape=escape, ignore_case=ignore_case):
            text = f"{_nested(operand)} {'ILIKE' if ignore_case else 'LIKE'} "
            text += _render_literal(pattern)
            return text + (f" ESCAPE {_render_literal(escape)}" if escape else "")
        case Negate(operand=operand):
            return f"-{_nested(operand)}"
        case Call(name=name, args=args):
            return f"{name}({', '.join(render(a) for a in args)})"
        case _:
            return repr(node)


def _nested(node: Node) -> str:
    simple = isinstance(node, Column | Literal | Call)
    return render(node) if simple else f"({render(node)})"


def _render_literal(value: Any) -> str:
    match value:
        case None:
            return "NULL"
        case bool():
            return "TRUE" if value else "FALSE"
        case str():
            return "'" + value.replace("'", "''") + "'"
        case dt.datetime():
            return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
        case dt.date():
            return f"DATE '{value.isoformat()}'"
        case _:
            return repr(value)
