"""Filter trees typed against a frame's columns and translated for polars and DuckDB.

`compile_tree` produces the polars expression and the DuckDB SQL together, node by node,
so the two engines cannot drift apart. Where polars and DuckDB disagree by default,
both sides spell out one meaning (the README's paragraph on filters says it for users):

- comparisons with NULL, AND/OR/NOT, IN and LIKE follow SQL's three-valued logic on both;
- `/` is true division (polars multiplies by the reciprocal of a constant divisor unless
  told otherwise), `//` and `%` are integer-only and floored (like Python), and a zero
  divisor gives NULL (DuckDB raises or gives inf, polars gives inf or NULL);
- integer +, -, *, negation and abs run on 128 bits (no 64-bit overflow), the rest on
  64-bit integers and doubles; float literals are exact doubles (DuckDB
  reads `0.3` as a DECIMAL);
- `round(x, d)` is half away from zero on the double `x * 10^d`, spelled out with floor
  (polars rounds half to even by default);
- `lower`/`upper` (and ILIKE) map ASCII letters only: the engines' Unicode case rules differ
  (`upper('ß')`, `lower('İ')`, final sigma);
- datetimes with a time zone compare as instants, and only with other zoned values.
"""

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import polars as pl

from metaxy_core._errors import SpecError
from metaxy_core._filter_tree import (
    BOOLEAN,
    FLOAT,
    INTEGER,
    NULL,
    TEXT,
    Arith,
    Call,
    Column,
    Compare,
    In,
    Is,
    Kind,
    Like,
    Literal,
    Logic,
    Negate,
    Node,
    Not,
    columns_of,
    literal_kind,
    render,
)

# -- compiling ---------------------------------------------------------------------------------


class FilterTypeError(SpecError):
    """A well-formed filter that cannot run on these columns; `_filters` adds the context."""


@dataclass(frozen=True, eq=False)
class Compiled:
    """One typed node: its kind, its polars expression and its DuckDB SQL.

    `column` marks a column as stored (any width, any zone) rather than a value already
    in the canonical 64-bit or UTC form; `constant` marks a value that reads no column.
    """

    kind: Kind
    expr: pl.Expr
    sql: str
    column: bool = False
    constant: bool = False


def quote_identifier(name: str) -> str:
    """A DuckDB identifier, always quoted."""
    return '"' + name.replace('"', '""') + '"'


def quote_text(value: str) -> str:
    """A DuckDB string literal (backslashes are not escapes there)."""
    return "'" + value.replace("'", "''") + "'"


_SQL_TYPES = {
    "text": "VARCHAR",
    "integer": "BIGINT",
    "float": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "null": "BOOLEAN",
}


def _polars_type(kind: Kind) -> pl.DataType:
    if kind.name == "datetime":
        return pl.Datetime("us", kind.time_zone)
    return {
        "text": pl.String(),
        "integer": pl.Int64(),
        "float": pl.Float64(),
        "boolean": pl.Boolean(),
        "date": pl.Date(),
    }.get(kind.name, pl.Boolean())


def _null(kind: Kind) -> Compiled:
    """A typed NULL (polars warns on untyped comparisons with None)."""
    sql_type = _SQL_TYPES.get(kind.name) or ("TIMESTAMPTZ" if kind.time_zone else "TIMESTAMP")
    expr = pl.lit(None, _polars_type(kind))
    return Compiled(kind, expr, f"CAST(NULL AS {sql_type})", constant=True)


def _literal(node: Literal) -> Compiled:
    value, kind = node.value, literal_kind(node.value)
    return Compiled(kind, pl.lit(value, _polars_type(kind)), _literal_sql(value), constant=True)


def _literal_sql(value: Any) -> str:
    """A literal as DuckDB SQL, typed as polars types it."""
    kind = literal_kind(value)
    match kind.name:
        case "null":
            return "NULL"
        case "boolean":
            return "TRUE" if value else "FALSE"
        case "integer":
            return f"CAST({value} AS BIGINT)"
        case "float":  # through text: DuckDB would read a bare 0.3 as a DECIMAL
            return f"CAST('{value!r}' AS DOUBLE)"
        case "text":
            return quote_text(value)
        case "date":
            return f"DATE '{value.isoformat()}'"
        case _:
            sql_type = "TIMESTAMPTZ" if kind.time_zone else "TIMESTAMP"
            return f"{sql_type} '{value.isoformat(sep=' ', timespec='microseconds')}'"


def _common(ka: Kind, kb: Kind, what: str) -> Kind:
    """The kind two values are compared or combined as, or a FilterTypeError."""
    if ka == NULL or kb == NULL:
        return kb if ka == NULL else ka
    if ka.numeric and kb.numeric:
        return FLOAT if FLOAT in (ka, kb) else INTEGER
    if ka.name == kb.name and (ka.name != "datetime" or bool(ka.time_zone) == bool(kb.time_zone)):
        return Kind("datetime", "UTC") if ka.time_zone else ka
    raise FilterTypeError(f"cannot {what} {ka.describe()} with {kb.describe()}{_hint(ka, kb)}")


def _hint(ka: Kind, kb: Kind) -> str:
    names = {ka.name, kb.name}
    if names == {"text", "date"}:
        return "; write dates as DATE '2024-01-31'"
    if names == {"text", "datetime"} or names == {"datetime"}:
        return (
            "; write datetimes as TIMESTAMP '2024-01-31 12:00:00', with an offset "
            "('...+00:00') for columns with a time zone"
        )
    if names == {"date", "datetime"}:
        return "; compare dates with DATE '...' and datetimes with TIMESTAMP '...'"
    return ""


def _as(value: Compiled, kind: Kind, *, sql: bool = True) -> Compiled:
    """`value` in the common kind's representation (64-bit numbers, UTC instants).

    With `sql=False` only the polars side is cast: DuckDB promotes numbers in comparisons,
    IN and COALESCE as polars' supercasting does, and an uncast column keeps its pushdown.
    """
    if value.kind == NULL:
        return _null(kind)
    if kind.numeric and (value.column or value.kind != kind):
        text = f"CAST({value.sql} AS {_SQL_TYPES[kind.name]})" if sql else value.sql
        return Compiled(kind, value.expr.cast(_polars_type(kind)), text, constant=value.constant)
    if kind.name == "datetime" and kind.time_zone and value.column:
        return Compiled(kind, value.expr.dt.convert_time_zone("UTC"), value.sql)
    return value


def _divided(dividend: pl.Expr, divisor: Compiled) -> pl.Expr:
    """True division in polars, also by a constant.

    Polars divides by a scalar by multiplying with its reciprocal (`3.0 / 10.0` gives
    0.30000000000000004); DuckDB divides. A divisor column made from the dividend (its
    null mask times zero, plus the constant: exact) makes polars divide element-wise.
    """
    if not divisor.constant:
        return dividend / divisor.expr
    return dividend / (dividend.is_null().cast(pl.Float64()) * 0.0 + divisor.expr)


def _boolean(value: Compiled, node: Node) -> Compiled:
    if value.kind == NULL:
        return _null(BOOLEAN)
    if value.kind != BOOLEAN:
        raise FilterTypeError(f"{render(node)!r} is {value.kind.describe()}, not a condition")
    return value


def _numeric(value: Compiled, node: Node, op: str) -> None:
    if not (value.kind.numeric or value.kind == NULL):
        raise FilterTypeError(
            f"{op} needs numbers, but {render(node)!r} is {value.kind.describe()}"
        )


_COMPARE: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _compare(node: Compare, kinds: Mapping[str, Kind]) -> Compiled:
    left, right = compile_tree(node.left, kinds), compile_tree(node.right, kinds)
    kind = _common(left.kind, right.kind, "compare")
    if NULL in (left.kind, right.kind):  # SQL: a comparison with NULL is NULL
        return _null(BOOLEAN)
    if kind.name == "datetime":  # zoned values compare as UTC instants
        left, right = _as(left, kind), _as(right, kind)
    expr = _COMPARE[node.op](left.expr, right.expr)
    return Compiled(BOOLEAN, expr, f"({left.sql} {node.op} {right.sql})")


def _in(node: In, kinds: Mapping[str, Kind]) -> Compiled:
    operand = compile_tree(node.operand, kinds)
    kind = operand.kind
    for value in node.values:  # no polars literal per value: lists may be long
        kind = _common(kind, literal_kind(value.value), "compare")
    present = [v for v in node.values if v.value is not None]
    if operand.kind == NULL or not present:
        return _null(BOOLEAN)
    operand = _as(operand, kind, sql=False)
    if kind.name == "datetime":  # no is_in: units and zones of the column and list may differ
        hits = [operand.expr == _as(_literal(v), kind).expr for v in present]
        hit = functools.reduce(lambda a, b: a | b, hits)  # `|` is three-valued
    else:
        listed = pl.Series([v.value for v in present], dtype=_polars_type(kind)).implode()
        found = operand.expr.is_in(listed)
        hit = pl.when(operand.expr.is_null()).then(pl.lit(None, pl.Boolean())).otherwise(found)
    if len(present) < len(node.values):  # a NULL in the list turns "not found" into NULL
        hit = hit | pl.lit(None, pl.Boolean())
    sql_values = ", ".join(_literal_sql(v.value) for v in node.values)
    return Compiled(BOOLEAN, hit, f"({operand.sql} IN ({sql_values}))")


def _balanced(exprs: list[pl.Expr], *, and_: bool) -> pl.Expr:
    """`&` or `|` (three-valued in polars) over many operands, as a shallow tree."""
    while len(exprs) > 1:
        pairs = zip(exprs[::2], exprs[1::2], strict=False)
        merged = [(a & b) if and_ else (a | b) for a, b in pairs]
        exprs = merged + ([exprs[-1]] if len(exprs) % 2 else [])
    return exprs[0]


_UPPER, _LOWER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"


def _ascii_case(value: Compiled, *, lower: bool) -> Compiled:
    source, target = (_UPPER, _LOWER) if lower else (_LOWER, _UPPER)
    expr = value.expr.str.replace_many(list(source), list(target))
    return Compiled(TEXT, expr, f"translate({value.sql}, '{source}', '{target}')")


def ascii_lower(text: str) -> str:
    """`text` with ASCII letters lowered, exactly as the generated `lower` does."""
    return text.translate(str.maketrans(_UPPER, _LOWER))


_REGEX_META = set("\\.+*?()|[]{}^$#&-~")


def _like_regex(pattern: str, escape: str | None) -> str:
    out, i = ["(?s)\\A"], 0
    while i < len(pattern):
        char = pattern[i]
        if char == escape:  # the parser refused a trailing escape
            i += 1
            char = pattern[i]
            out.append("\\" + char if char in _REGEX_META else char)
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append("\\" + char if char in _REGEX_META else char)
        i += 1
    return "".join(out) + "\\z"


def _like_expr(operand: pl.Expr, pattern: str, escape: str | None) -> pl.Expr:
    """LIKE in polars: plain string tests for the common shapes, else an anchored regex."""
    core = pattern.strip("%")
    if escape is None and "_" not in pattern and "%" not in core:  # wildcards at the ends only
        lead, trail = pattern.startswith("%"), pattern.endswith("%")
        if lead and trail:
            return operand.str.contains(core, literal=True)
        if lead:
            return operand.str.ends_with(core)
        if trail:
            return operand.str.starts_with(core)
        return operand == pl.lit(pattern, pl.String())
    return operand.str.contains(_like_regex(pattern, escape))


def _like(node: Like, kinds: Mapping[str, Kind]) -> Compiled:
    operand = compile_tree(node.operand, kinds)
    if operand.kind not in (TEXT, NULL):
        raise FilterTypeError(
            f"LIKE needs text, but {render(node.operand)!r} is {operand.kind.describe()}"
        )
    if operand.kind == NULL or node.pattern is None:
        return _null(BOOLEAN)
    pattern, escape = node.pattern, node.escape
    if node.ignore_case:
        operand = _ascii_case(operand, lower=True)
        pattern = ascii_lower(pattern)
        escape = None if escape is None else ascii_lower(escape)
    sql = f"({operand.sql} LIKE {quote_text(pattern)}"
    sql += f" ESCAPE {quote_text(escape)})" if escape else ")"
    return Compiled(BOOLEAN, _like_expr(operand.expr, pattern, escape), sql)


def _arith(node: Arith, kinds: Mapping[str, Kind]) -> Compiled:
    left, right = compile_tree(node.left, kinds), compile_tree(node.right, kinds)
    _numeric(left, node.left, node.op)
    _numeric(right, node.right, node.op)
    if node.op in ("//", "%") and FLOAT in (left.kind, right.kind):
        raise FilterTypeError(f"{node.op} needs integers; use / and round() for floats")
    kind = FLOAT if node.op == "/" else _common(left.kind, right.kind, "combine")
    if kind == NULL:
        kind = INTEGER
    if NULL in (left.kind, right.kind):
        return _null(kind)
    a, b = _as(left, kind), _as(right, kind)
    match node.op:
        case "+" | "-" | "*":
            a, b = _wide(a), _wide(b)
            ops = {"+": a.expr + b.expr, "-": a.expr - b.expr, "*": a.expr * b.expr}
            return Compiled(kind, ops[node.op], f"({a.sql} {node.op} {b.sql})")
        case "/":
            expr = pl.when(b.expr != 0).then(_divided(a.expr, b))
            return Compiled(kind, expr, f"({a.sql} / NULLIF({b.sql}, CAST(0 AS DOUBLE)))")
        case _:
            return _floored(node.op, a, b)


def _wide(value: Compiled) -> Compiled:
    """Integers in 128 bits before +, -, * and abs: no 64-bit overflow on either engine.

    (Left alone, polars wraps around and DuckDB raises, so `i + 1 > 0` kept different rows.)
    """
    if value.kind != INTEGER:
        return value
    return Compiled(INTEGER, value.expr.cast(pl.Int128()), f"CAST({value.sql} AS HUGEINT)")


def _floored(op: str, a: Compiled, b: Compiled) -> Compiled:
    """Python's floored // and % on integers; NULL for a zero divisor on both engines."""
    expr = pl.when(b.expr != 0).then(a.expr // b.expr if op == "//" else a.expr % b.expr)
    d = f"NULLIF({b.sql}, CAST(0 AS BIGINT))"
    # DuckDB truncates toward zero: step back when the remainder's sign differs from d's.
    off = f"CASE WHEN ({a.sql} % {d}) <> 0 AND (({a.sql} % {d}) < 0) <> ({d} < 0) THEN"
    if op == "//":
        sql = f"(({a.sql} // {d}) - ({off} 1 ELSE 0 END))"
    else:
        sql = f"(({a.sql} % {d}) + ({off} {d} ELSE 0 END))"
    return Compiled(INTEGER, expr, sql)


def _call(node: Call, kinds: Mapping[str, Kind]) -> Compiled:
    args = [compile_tree(a, kinds) for a in node.args]
    first = args[0]
    match node.name:
        case "lower" | "upper" | "length":
            if first.kind not in (TEXT, NULL):
                raise FilterTypeError(
                    f"{node.name}() needs text, but {render(node.args[0])!r} is "
                    f"{first.kind.describe()}"
                )
            if node.name == "length":
                if first.kind == NULL:
                    return _null(INTEGER)
                expr = first.expr.str.len_chars().cast(pl.Int64())
                return Compiled(INTEGER, expr, f"length({first.sql})")
            return (
                _null(TEXT)
                if first.kind == NULL
                else _ascii_case(first, lower=node.name == "lower")
            )
        case "abs":
            _numeric(first, node.args[0], "abs()")
            kind = INTEGER if first.kind == NULL else first.kind
            value = _wide(_as(first, kind))
            return Compiled(kind, value.expr.abs(), f"abs({value.sql})")
        case "round":
            return _round(first, node)
        case _:
            return _coalesce(args)


def _round(value: Compiled, node: Call) -> Compiled:
    """Half away from zero on the double `x * 10^d`, the same float steps on both engines."""
    _numeric(value, node.args[0], "round()")
    digits = cast(Literal, node.args[1]).value if len(node.args) > 1 else 0
    x = _as(value, FLOAT)
    scale = float(10**digits)
    e = x.expr
    floor = pl.when(e < 0).then(-((-e * scale + 0.5).floor())).otherwise((e * scale + 0.5).floor())
    expr = _divided(floor, Compiled(FLOAT, pl.lit(scale, pl.Float64()), "", constant=True))
    p = f"CAST('{scale!r}' AS DOUBLE)"
    half = "CAST('0.5' AS DOUBLE)"
    sql = (
        f"(CASE WHEN {x.sql} < 0 THEN -floor((-{x.sql}) * {p} + {half}) "
        f"ELSE floor({x.sql} * {p} + {half}) END / {p})"
    )
    return Compiled(FLOAT, expr, sql)


def _coalesce(args: list[Compiled]) -> Compiled:
    kind = args[0].kind
    for arg in args[1:]:
        kind = _common(kind, arg.kind, "coalesce")
    if kind == NULL:
        return Compiled(NULL, pl.lit(None, pl.Boolean()), "NULL")
    values = [_as(a, kind, sql=False) for a in args]
    sql = f"COALESCE({', '.join(v.sql for v in values)})"
    return Compiled(kind, pl.coalesce([v.expr for v in values]), sql)


def compile_tree(node: Node, kinds: Mapping[str, Kind]) -> Compiled:
    """Type `node` against the columns' kinds and translate it for both engines.

    Raises:
        FilterTypeError: the filter mixes kinds no engine agrees on (text with numbers...).
    """
    compiled = _compile(node, kinds)
    if compiled.constant or next(columns_of(node), None) is not None:
        return compiled
    return dataclasses.replace(compiled, constant=True)


def _compile(node: Node, kinds: Mapping[str, Kind]) -> Compiled:
    match node:
        case Column(name=name):
            return Compiled(kinds[name], pl.col(name), quote_identifier(name), column=True)
        case Literal():
            return _literal(node)
        case Compare():
            return _compare(node, kinds)
        case Logic(op=op, operands=operands):
            parts = [_boolean(compile_tree(o, kinds), o) for o in operands]
            expr = _balanced([p.expr for p in parts], and_=op == "AND")
            return Compiled(BOOLEAN, expr, "(" + f" {op} ".join(p.sql for p in parts) + ")")
        case Not(operand=operand):
            a = _boolean(compile_tree(operand, kinds), operand)
            return Compiled(BOOLEAN, ~a.expr, f"(NOT {a.sql})")
        case Is(operand=operand, value=None):
            a = compile_tree(operand, kinds)
            return Compiled(BOOLEAN, a.expr.is_null(), f"({a.sql} IS NULL)")
        case Is(operand=operand, value=value):
            a = _boolean(compile_tree(operand, kinds), operand)
            expr = (a.expr if value else ~a.expr).fill_null(False)
            return Compiled(BOOLEAN, expr, f"({a.sql} IS {'TRUE' if value else 'FALSE'})")
        case In():
            return _in(node, kinds)
        case Like():
            return _like(node, kinds)
        case Arith():
            return _arith(node, kinds)
        case Negate(operand=operand):
            a = compile_tree(operand, kinds)
            _numeric(a, operand, "unary -")
            a = _wide(_as(a, INTEGER if a.kind == NULL else a.kind))
            # polars has no unary minus on 128-bit integers: subtract from zero instead.
            negated = pl.lit(0, pl.Int128()) - a.expr if a.kind == INTEGER else -a.expr
            return Compiled(a.kind, negated, f"(- {a.sql})")
        case Call():
            return _call(node, kinds)
        case _:
            raise SpecError(f"Not a filter node: {node!r}.")
