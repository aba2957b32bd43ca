"""Every store keeps the same types for a write, or refuses it alike before writing anything."""

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

import metaxy_core as mx

SPEC = mx.FeatureSpec("p", id_columns=["id"], fields=["x"])


@pytest.fixture(params=["memory", "duckdb", "delta"])
def store(request, tmp_path):
    graph = mx.FeatureGraph([SPEC])
    make = {
        "memory": lambda: mx.MemoryStore(graph),
        "duckdb": lambda: mx.DuckDBStore(tmp_path / "m.duckdb", graph),
        "delta": lambda: mx.DeltaStore(tmp_path / "delta", graph),
    }[request.param]
    with make() as opened:
        yield opened


def new_rows(store: mx.MetadataStore) -> pl.DataFrame:
    return store.resolve_update("p", samples=pl.DataFrame({"id": ["a", "b"], "x": ["1", "2"]})).new


PARIS = pl.Series([dt.datetime(2024, 1, 1, 12), dt.datetime(2024, 6, 1)]).dt.replace_time_zone(
    "Europe/Paris"
)
KEPT_AS = [
    (pl.Series([1, 2], dtype=pl.UInt32), pl.Int64),
    (pl.Series(["a", "b"], dtype=pl.Categorical), pl.String),
    (pl.Series([10**18, 10**18 + 1000]).cast(pl.Datetime("ns")), pl.Datetime("us")),
    (PARIS, pl.Datetime("us", "UTC")),
    (pl.Series([[1, 2], [3, 4]], dtype=pl.Array(pl.Int64, 2)), pl.List(pl.Int64)),
    (pl.Series([Decimal("1.50"), None], dtype=pl.Decimal(5, 2)), pl.Decimal(5, 2)),
]


@pytest.mark.parametrize(("column", "kept"), KEPT_AS, ids=lambda v: str(getattr(v, "dtype", v)))
def test_a_column_is_kept_with_the_same_type_on_every_store(store, column, kept):
    rows = new_rows(store)
    store.write("p", rows.with_columns(column.alias("c")))
    read = store.read("p")
    assert read.schema["c"] == kept
    assert read["c"].to_list() == rows.with_columns(column.alias("c").cast(kept))["c"].to_list()
    store.write("p", rows.with_columns(column.alias("c")))  # the same frame again is accepted
    assert store.history("p").height == 4


@pytest.mark.parametrize(
    "column",
    [
        pl.Series([dt.timedelta(seconds=1), None]),
        pl.Series([dt.time(1), dt.time(2)]),
        pl.Series([10**18 + 1, 1]).cast(pl.Datetime("ns")),  # finer than a microsecond
        pl.Series([{"a": dt.timedelta(1)}, None]),
    ],
    ids=["duration", "time", "nanoseconds", "nested-duration"],
)
def test_types_no_store_keeps_alike_are_refused_and_nothing_is_written(store, column):
    rows = new_rows(store)
    with pytest.raises(mx.WriteValidationError, match="column 'c'"):
        store.write("p", rows.with_columns(column.alias("c")))
    assert not store.has_feature("p")


@pytest.mark.parametrize(
    "extra",
    [
        {"a": pl.lit(1), "A": pl.lit(2)},
        {"ID": pl.lit(1)},
        {"METAXY_DATA_VERSION__X": pl.lit("v")},
    ],
    ids=["a-A", "id-ID", "system-name"],
)
def test_column_names_differing_only_in_case_are_refused(store, extra):
    rows = new_rows(store)
    with pytest.raises(mx.WriteValidationError, match="differ only in case"):
        store.write("p", rows.with_columns(**extra))
    assert not store.has_feature("p")


def test_a_column_differing_from_a_stored_one_only_in_case_is_refused(store):
    rows = new_rows(store)
    store.write("p", rows.with_columns(score=pl.lit(1)))
    with pytest.raises(mx.WriteValidationError, match="'Score' and 'score'"):
        store.write("p", rows.with_columns(Score=pl.lit(2)))
    assert store.history("p").height == 2


def test_data_version_overrides_must_be_text(store):
    rows = new_rows(store)
    with pytest.raises(mx.WriteValidationError, match="overrides must be text"):
        store.write("p", rows.with_columns(metaxy_data_version__x=pl.lit({"a": 1})))
    assert not store.has_feature("p")
    store.write("p", rows.with_columns(metaxy_data_version__x=pl.lit("content-hash")))
    assert store.read("p")["metaxy_data_version__x"].to_list() == ["content-hash"] * 2
