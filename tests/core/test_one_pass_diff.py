"""The one-join diff gives exactly the three-join diff's answer, on polars and on DuckDB."""

from typing import Any

import duckdb
import narwhals as nw
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core._increments import diff, split_lists
from metaxy_core._one_pass_diff import diff_in_one_join
from metaxy_core.stores._duckdb_engine import DuckDBEngine
from metaxy_core.versioning._polars_engine import PolarsEngine

SPEC = mx.FeatureSpec("leaf", id_columns=["sample_id"], fields=["a", "b"])
VALUES = st.sampled_from(["x", "y", None])
CODES = st.sampled_from(["1", "2", None])  # the spec's code version is "1"
SAMPLE = st.tuples(VALUES, VALUES, CODES, CODES)


def _frames(
    expected: dict[int, tuple[str, str]], current: dict[int, tuple[Any, ...]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    exp = pl.DataFrame(
        [(f"s{i}", i * 10, a, b, "p") for i, (a, b) in expected.items()],
        schema={
            "sample_id": pl.String,
            "carried": pl.Int64,
            C.provenance_column("a"): pl.String,
            C.provenance_column("b"): pl.String,
            C.PROVENANCE: pl.String,
        },
        orient="row",
    )
    stored = [C.provenance_column("a"), C.provenance_column("b")]
    stored += [C.code_version_column("a"), C.code_version_column("b")]
    cur = pl.DataFrame(
        [(f"s{i}", *v) for i, v in current.items()],
        schema={"sample_id": pl.String, **dict.fromkeys(stored, pl.String)},
        orient="row",
    )
    return exp, cur


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("sample_id")


def _lazy(frame: pl.DataFrame, con: duckdb.DuckDBPyConnection | None) -> nw.LazyFrame[Any]:
    return nw.from_native(frame.lazy() if con is None else con.from_arrow(frame.to_arrow()))


# One in-memory database for every example (a connection per example costs more than the diff).
_CON = duckdb.connect()


@settings(max_examples=25, deadline=None)
@given(
    expected=st.dictionaries(st.integers(0, 12), st.tuples(VALUES, VALUES), max_size=10),
    current=st.dictionaries(st.integers(0, 12), SAMPLE, max_size=10),
)
def test_one_join_diff_equals_three_join_diff(expected, current):
    exp, cur = _frames({k: (a or "x", b or "y") for k, (a, b) in expected.items()}, current)
    for engine in (None, _CON):
        old = diff(SPEC, _lazy(exp, engine), _lazy(cur, engine))
        new, stale, orphaned = (f.collect(backend="polars").to_native() for f in old)
        joins = PolarsEngine() if engine is None else DuckDBEngine(engine)
        one = diff_in_one_join(SPEC, _lazy(exp, engine), _lazy(cur, engine), joins)
        assert _sorted(one[0]).equals(_sorted(new))
        assert _sorted(one[1]).equals(_sorted(split_lists(stale)))
        assert _sorted(one[2]).equals(_sorted(orphaned))
