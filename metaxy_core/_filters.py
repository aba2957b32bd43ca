"""One filter language for every user-written filter: dep filters, read, copy and resolve.

A filter string is parsed once (by sqlglot, in DuckDB's SQL dialect) into a small allowed
subset; anything else is refused with a `SpecError` that names the part. The engines never
see the user's text: `_filter_compile` generates the polars expression and the DuckDB SQL
(every identifier quoted) from the validated tree, so a filter can never read a file or
another table, and selects the same rows on every store.
"""

import datetime as dt
import difflib
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from metaxy_core import _columns as C
from metaxy_core import _filter_compile as G
from metaxy_core import _filter_tree as T
from metaxy_core._errors import SpecError

ALLOWED = (
    "column names; literals ('text', 12, 1.5, TRUE/FALSE, NULL, DATE '2024-01-31', "
    "TIMESTAMP '2024-01-31 12:00:00' with an optional offset); comparisons = <> != < <= > >=; "
    "AND, OR, NOT; IN (values); BETWEEN; LIKE and ILIKE (optional ESCAPE); "
    "IS [NOT] NULL, IS [NOT] TRUE/FALSE; + - * / // % and parentheses; "
    f"the functions {', '.join(T.FUNCTIONS)}"
)

_COMPARE = {exp.EQ: "=", exp.NEQ: "<>", exp.LT: "<", exp.LTE: "<=", exp.GT: ">", exp.GTE: ">="}
_ARITH = {exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.Div: "/", exp.IntDiv: "//", exp.Mod: "%"}
_FUNCTIONS: dict[type[exp.Expr], str] = {
    exp.Abs: "abs",
    exp.Coalesce: "coalesce",
    exp.Length: "length",
    exp.Lower: "lower",
    exp.Round: "round",
    exp.Upper: "upper",
}
# The arguments sqlglot may set on each accepted node; any other one (a subquery in IN, a
# table qualifier, LIKE ANY...) means a construct outside the subset.
_ARGS: dict[type[exp.Expr], set[str]] = {
    exp.Column: {"this"},
    exp.Identifier: {"this", "quoted"},
    exp.Literal: {"this", "is_string"},
    exp.Cast: {"this", "to"},
    exp.In: {"this", "expressions"},
    exp.Between: {"this", "low", "high"},
    exp.Like: {"this", "expression", "negate"},
    exp.ILike: {"this", "expression", "negate"},
    exp.Escape: {"this", "expression"},
    exp.Div: {"this", "expression", "typed", "safe"},
    exp.Mod: {"this", "expression", "safe"},
    exp.Round: {"this", "decimals"},
    exp.Coalesce: {"this", "expressions", "is_nvl", "is_null"},
}
_TABLE_FUNCTIONS = ("read_", "glob", "query", "parquet_scan", "sniff_csv", "getvariable")


@dataclass(frozen=True)
class Filter:
    """A parsed, validated filter: one condition on a frame's columns.

    Attributes:
        text: the filter as the user wrote it.
        columns: the column names it reads, in order of appearance.

    Example:
        >>> flt = parse_filter("duration > 5 AND lower(lang) = 'en'")
        >>> flt.columns
        ('duration', 'lang')
    """

    text: str
    columns: tuple[str, ...]
    tree: T.Node = field(repr=False, compare=False)

    def check(self, schema: Mapping[str, Any], *, where: str) -> None:
        """Refuse the filter if it names unknown columns or mixes kinds on these columns.

        Args:
            schema: column name -> narwhals or polars dtype of the frame it will filter.
            where: what is being filtered, for the message (e.g. "read of video").

        Raises:
            SpecError: naming the filter, the unknown column(s) and the available ones, or
                the mismatched part.
        """
        unknown = [c for c in self.columns if c not in schema]
        if unknown:
            raise SpecError(
                f"Filter {self.text!r} on {where} names unknown column(s) {unknown}; "
                f"{_available(schema)}.{_did_you_mean(unknown, schema)}"
            )
        self._compile(schema, where=where)

    def to_polars(self, schema: Mapping[str, Any]) -> pl.Expr:
        """The polars expression of the filter on columns typed as in `schema`."""
        return self._compile(schema, where="a frame").expr

    def to_sql(self, schema: Mapping[str, Any]) -> str:
        """The DuckDB SQL of the filter (identifiers quoted) on columns typed as in `schema`."""
        return self._compile(schema, where="a frame").sql

    def _compile(self, schema: Mapping[str, Any], *, where: str) -> G.Compiled:
        kinds: dict[str, T.Kind] = {}
        for name in self.columns:
            kind = T.kind_of(schema[name])
            if kind is None:
                raise SpecError(
                    f"Filter {self.text!r} on {where}: column {name!r} has type "
                    f"{schema[name]}; filters read {T.READABLE} columns."
                )
            kinds[name] = kind
        try:
            return _compiled(self, tuple(kinds.items()))
        except G.FilterTypeError as exc:
            raise SpecError(f"Filter {self.text!r} on {where}: {exc}.") from None
        except RecursionError:
            raise SpecError(_too_deep(self.text)) from None


@functools.lru_cache(maxsize=1024)
def _compiled(flt: Filter, kinds: tuple[tuple[str, T.Kind], ...]) -> G.Compiled:
    """A filter compiled for columns of these kinds (checked, then applied: compiled once)."""
    compiled = G.compile_tree(flt.tree, dict(kinds))
    if compiled.kind == T.NULL:  # `WHERE NULL` keeps no row
        return G.Compiled(T.BOOLEAN, pl.lit(None, pl.Boolean()), "CAST(NULL AS BOOLEAN)")
    if compiled.kind != T.BOOLEAN:
        raise G.FilterTypeError(f"it is {compiled.kind.describe()}, not a condition (e.g. `x > 1`)")
    return compiled


def _available(schema: Mapping[str, Any]) -> str:
    names = sorted(c for c in schema if not C.is_system(c) and not c.startswith("__mx"))
    system = sum(1 for c in schema if C.is_system(c))
    return f"available: {names}" + (f" and {system} {C.PREFIX}* system columns" if system else "")


def _did_you_mean(unknown: list[str], schema: Mapping[str, Any]) -> str:
    close = [m for c in unknown for m in difflib.get_close_matches(c, list(schema), n=1)]
    return f" Hint: did you mean {close[0]!r}?" if close else ""


def parse_filter(text: str) -> Filter:
    """Parse and validate one filter (cached: each distinct text is parsed once).

    Args:
        text: a condition in the filter language, e.g. `"duration > 5"`.

    Returns:
        The validated `Filter`.

    Raises:
        SpecError: the text does not parse, holds several statements, or uses something
            outside the subset (subqueries, table functions, unknown functions, `*`,
            qualified names, casts...); the message names the part and what is allowed.

    Example:
        >>> parse_filter("path LIKE '%.mp4'").columns
        ('path',)
    """
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"Filter {text!r}: a filter must be a non-empty string condition.")
    return _parse(text)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Filter:
    try:
        statements = [s for s in sqlglot.parse(text, read="duckdb") if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        detail = first.get("description", str(exc))
        raise SpecError(
            f"Filter {text!r} does not parse: {detail} (column {first.get('col', '?')})."
        ) from None
    except RecursionError:
        raise SpecError(_too_deep(text)) from None
    except SqlglotError as exc:
        raise SpecError(f"Filter {text!r} does not parse: {exc}.") from None
    if not statements:
        raise SpecError(f"Filter {text!r}: a filter must be a non-empty string condition.")
    if len(statements) > 1:
        raise SpecError(
            f"Filter {text!r} holds {len(statements)} statements; a filter is one condition "
            "(remove the ';')."
        )
    try:
        tree = _convert(statements[0], text)
        return Filter(text, tuple(dict.fromkeys(T.columns_of(tree))), tree)
    except RecursionError:
        raise SpecError(_too_deep(text)) from None


def _too_deep(text: str) -> str:
    return f"Filter {text!r} nests too deeply; write long lists of alternatives as IN (...)."


def parse_filters(filters: Iterable[str] | str) -> tuple[Filter, ...]:
    """Parse a `filters=` argument: one string or a sequence of strings (all must hold)."""
    if isinstance(filters, str):
        return (parse_filter(filters),)
    return tuple(parse_filter(f) for f in filters)


# -- sqlglot tree -> filter tree --------------------------------------------------------------


def _refuse(text: str, part: str) -> SpecError:
    return SpecError(f"Filter {text!r}: {part} is not allowed. Filters may use {ALLOWED}.")


def _describe(node: exp.Expr) -> str:
    """How an unsupported construct is named in the message."""
    sql = node.sql(dialect="duckdb")
    if isinstance(node, exp.Query | exp.Subquery | exp.Exists | exp.Any | exp.All):
        return f"the subquery {sql!r} (a filter can never read a file or another table)"
    if isinstance(node, exp.Cast):  # before Func: sqlglot's casts are functions
        return f"the cast {sql!r} (only DATE '...' and TIMESTAMP '...' literals)"
    if isinstance(node, exp.Func):
        name = node.sql_name().lower() if not isinstance(node, exp.Anonymous) else node.name
        if name.lower().startswith(_TABLE_FUNCTIONS):
            return f"the function {name}() (a filter can never read a file or another table)"
        return f"the function {name}()"
    if isinstance(node, exp.Star):
        return "'*'"
    if isinstance(node, exp.Column):
        return f"the qualified name {sql!r} (filters read the frame's own columns: {node.name!r})"
    if isinstance(node, exp.Placeholder):
        return f"the parameter {sql!r}"
    return f"{sql!r}"


def _check_args(node: exp.Expr, text: str) -> None:
    allowed = _ARGS.get(type(node), {"this", "expression"})
    extra = [v for k, v in node.args.items() if v not in (None, False, []) and k not in allowed]
    if extra:
        first = extra[0]  # name a subquery in IN itself; a table qualifier with its column
        structural = isinstance(first, exp.Expr) and not isinstance(first, exp.Identifier)
        raise _refuse(text, _describe(first if structural else node))


def _convert(node: exp.Expr, text: str) -> T.Node:
    """The filter tree of one sqlglot node, or a SpecError naming what is outside the subset."""
    kind = type(node)
    if kind not in (exp.Star,):
        _check_args(node, text)
    match node:
        case exp.Paren():
            return _convert(node.this, text)
        case exp.Column():
            if not isinstance(node.this, exp.Identifier):
                raise _refuse(text, _describe(node.this))
            return T.Column(node.this.this)
        case exp.Literal() | exp.Boolean() | exp.Null() | exp.Cast() if kind is not exp.TryCast:
            return T.Literal(_literal_value(node, text))
        case exp.Neg() if isinstance(node.this, exp.Literal) and not node.this.is_string:
            return T.Literal(_literal_value(node.this, text, negate=True))
        case exp.Neg():
            return T.Negate(_convert(node.this, text))
        case exp.Not():
            return T.Not(_convert(node.this, text))
        case exp.And() | exp.Or():  # flattened: a chain of a thousand ORs is one node
            operands = [_convert(o, text) for o in node.flatten()]
            return T.Logic("AND" if kind is exp.And else "OR", tuple(operands))
        case _ if kind in _COMPARE:
            left, right = _convert(node.this, text), _convert(node.expression, text)
            return T.Compare(_COMPARE[kind], left, right)
        case _ if kind in _ARITH:
            left, right = _convert(node.this, text), _convert(node.expression, text)
            return T.Arith(_ARITH[kind], left, right)
        case exp.Is():
            return _is(node, text)
        case exp.In():
            return _in(node, text)
        case exp.Between():
            operand = _convert(node.this, text)
            low, high = _convert(node.args["low"], text), _convert(node.args["high"], text)
            return T.Logic("AND", (T.Compare(">=", operand, low), T.Compare("<=", operand, high)))
        case exp.Like() | exp.ILike():
            return _like(node, None, text)
        case exp.Escape() if isinstance(node.this, exp.Like | exp.ILike):
            _check_args(node.this, text)
            return _like(node.this, node.expression, text)
        case _ if kind in _FUNCTIONS:
            return _call(node, _FUNCTIONS[kind], text)
        case _:
            raise _refuse(text, _describe(node))


def _int64(value: int, text: str) -> int:
    if not -(2**63) <= value < 2**63:
        raise SpecError(f"Filter {text!r}: the integer {value} does not fit in 64 bits.")
    return value


def _literal_value(node: exp.Expr, text: str, *, negate: bool = False) -> Any:
    """The Python value of a literal (text, number, boolean, NULL, DATE or TIMESTAMP)."""
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Literal):
        raw = str(node.this)
        if node.is_string:
            return raw
        if raw.isdigit():
            return _int64(-int(raw) if negate else int(raw), text)
        value = -float(raw) if negate else float(raw)
        if value in (float("inf"), float("-inf")):
            raise SpecError(f"Filter {text!r}: the number {raw} is too large for a float.")
        return value
    return _typed_literal(node, text)


def _typed_literal(node: exp.Expr, text: str) -> Any:
    """DATE '...' and TIMESTAMP '...' (sqlglot reads both, and CAST('...' AS DATE), as casts)."""
    to = node.args.get("to")
    source = node.this
    if not (isinstance(source, exp.Literal) and source.is_string and isinstance(to, exp.DataType)):
        raise _refuse(text, _describe(node))
    if to.expressions or to.args.get("nested"):
        raise _refuse(text, _describe(node))
    raw = str(source.this)
    try:
        if to.this == exp.DataType.Type.DATE:
            return dt.date.fromisoformat(raw)
        if to.this in (
            exp.DataType.Type.TIMESTAMP,
            exp.DataType.Type.TIMESTAMPNTZ,
            exp.DataType.Type.TIMESTAMPTZ,
            exp.DataType.Type.DATETIME,
        ):
            value = dt.datetime.fromisoformat(raw)
            if to.this == exp.DataType.Type.TIMESTAMPTZ and value.tzinfo is None:
                raise SpecError(
                    f"Filter {text!r}: {raw!r} needs an offset, e.g. '{raw}+00:00' "
                    "(the session's time zone differs between engines)."
                )
            return value.astimezone(dt.UTC) if value.tzinfo else value
    except SpecError:  # a ValueError too: keep its own message
        raise
    except ValueError as exc:
        raise SpecError(
            f"Filter {text!r}: {raw!r} is not a valid date or timestamp ({exc})."
        ) from None
    raise _refuse(text, _describe(node))


def _is(node: exp.Is, text: str) -> T.Node:
    target = node.expression
    operand = _convert(node.this, text)
    if isinstance(target, exp.Null):
        return T.Is(operand, None)
    if isinstance(target, exp.Boolean):
        return T.Is(operand, bool(target.this))
    raise _refuse(text, _describe(node))


def _in(node: exp.In, text: str) -> T.Node:
    values: list[T.Literal] = []
    for item in node.expressions:
        value = _convert(item, text)
        if not isinstance(value, T.Literal):
            shown = T.render(value)
            raise SpecError(
                f"Filter {text!r}: IN takes a list of literal values; {shown!r} is not one."
            )
        values.append(value)
    if not values:
        raise SpecError(f"Filter {text!r}: IN needs at least one value.")
    return T.In(_convert(node.this, text), tuple(values))


def _like(node: exp.Like | exp.ILike, escape: exp.Expr | None, text: str) -> T.Node:
    pattern = _convert(node.expression, text)
    if not (isinstance(pattern, T.Literal) and isinstance(pattern.value, str | None)):
        raise SpecError(f"Filter {text!r}: the LIKE pattern must be a 'text' literal.")
    char: str | None = None
    if escape is not None:
        value = _convert(escape, text)
        char = value.value if isinstance(value, T.Literal) else None
        if not isinstance(char, str) or len(char) != 1 or char in "%_":
            raise SpecError(f"Filter {text!r}: ESCAPE takes one character other than '%' and '_'.")
        if pattern.value is not None and _ends_with_escape(pattern.value, char):
            raise SpecError(f"Filter {text!r}: the LIKE pattern ends with its escape character.")
    like = T.Like(_convert(node.this, text), pattern.value, char, isinstance(node, exp.ILike))
    return T.Not(like) if node.args.get("negate") else like


def _ends_with_escape(pattern: str, char: str) -> bool:
    i = 0
    while i < len(pattern):
        if pattern[i] == char:
            if i == len(pattern) - 1:
                return True
            i += 1
        i += 1
    return False


def _call(node: exp.Expr, name: str, text: str) -> T.Node:
    args = [_convert(node.this, text)]
    if name == "coalesce":
        args += [_convert(e, text) for e in node.expressions]
    if name == "round" and node.args.get("decimals") is not None:
        digits = _convert(node.args["decimals"], text)
        if not (
            isinstance(digits, T.Literal)
            and type(digits.value) is int
            and 0 <= digits.value <= T.MAX_ROUND_DIGITS
        ):
            raise SpecError(
                f"Filter {text!r}: round() takes an integer literal from 0 to "
                f"{T.MAX_ROUND_DIGITS} as its number of decimals."
            )
        args.append(digits)
    return T.Call(name, tuple(args))
