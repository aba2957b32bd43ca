"""Hash inputs (`Composition`) are built alike by each engine and as their definition says."""

import duckdb
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from metaxy_core.stores._duckdb_engine import composed as duckdb_composed
from metaxy_core.versioning._engine import Composition
from metaxy_core.versioning._polars_engine import composed as polars_composed

COLUMNS = ["a", "b", "c"]
# Values may hold the separators of the format, multi-byte text, or be empty or null.
VALUES = st.one_of(st.none(), st.sampled_from(["", "x", "|a=", "1:é", "日本"]), st.text(max_size=4))
LABELS = st.sampled_from(["", "|f=", "|up/x@", "é"])
COMPOSITIONS = st.builds(
    Composition,
    head=st.sampled_from(["", "h", "1bf7a5ca37d1dae7"]),
    parts=st.lists(st.tuples(LABELS, st.sampled_from(COLUMNS)), max_size=3).map(tuple),
    framed=st.booleans(),
    all_or_null=st.booleans(),
)


def reference(composition: Composition, row: dict[str, str | None]) -> str | None:
    """The definition (`Composition`'s docstring), written plainly."""
    out = composition.head
    for label, column in composition.parts:
        value = row[column]
        if value is None:
            if composition.all_or_null:
                return None
            continue
        out += label + (f"{len(value.encode())}:{value}" if composition.framed else value)
    return out


_CON = duckdb.connect()  # one in-memory database for every example


@settings(max_examples=60, deadline=None)
@given(
    composition=COMPOSITIONS,
    rows=st.lists(st.fixed_dictionaries({c: VALUES for c in COLUMNS}), min_size=1, max_size=6),
)
def test_polars_and_duckdb_compose_as_defined(
    composition: Composition, rows: list[dict[str, str | None]]
) -> None:
    frame = pl.DataFrame(rows, schema=dict.fromkeys(COLUMNS, pl.String))
    want = [reference(composition, row) for row in rows]
    by_polars = frame.with_columns(polars_composed(composition).alias("x"))["x"].to_list()
    relation = _CON.from_arrow(frame.to_arrow())
    selected = relation.select(duckdb_composed(composition).alias("x"), "a")
    by_duckdb = [row[0] for row in selected.fetchall()]
    assert by_polars == want
    assert by_duckdb == want
