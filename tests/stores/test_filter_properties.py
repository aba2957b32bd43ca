"""One filter language, the same rows on every store.

Random filters from the allowed subset (typed trees over text, integer, float, boolean,
date and datetime columns, all with NULLs) run through `read(filters=)` on MemoryStore,
DuckDBStore, DeltaStore and SQLStore (PostgreSQL) after the same write: every store must
keep the same rows, or refuse the filter with the same `SpecError`.
"""

import datetime as dt
from pathlib import Path

import narwhals as nw
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metaxy_core as mx

UTC = dt.UTC

ITEM = mx.FeatureSpec("item", id_columns=["sample_id"], fields=["data"])
COLUMNS: dict[str, pl.DataType] = {
    "sample_id": pl.String(),
    "name": pl.String(),
    "n": pl.Int64(),
    "score": pl.Float64(),
    "flag": pl.Boolean(),
    "day": pl.Date(),
    "at": pl.Datetime("us", "UTC"),
    "local": pl.Datetime("us"),
}
NAMES = [
    "a",
    "A",
    "abc",
    "Abc",
    "x_y",
    "x%y",
    "",
    "Straße",
    "İstanbul",
    "\u0391\u03a3",
    "é",
    "b'c",
    None,
]
NS = [0, 1, -1, 2, -7, 7, 3, 10, -10, 42, 2**63 - 1, -(2**63), None]  # int64 extremes too
SCORES = [0.25, 0.35, 0.05, -2.5, 2.5, 0.3, 0.1 + 0.2, 1e10, -0.0, 1 / 3, float("nan"), None]
DAYS = [dt.date(2024, 1, 1), dt.date(2024, 2, 29), dt.date(1999, 12, 31), None]
ATS = [
    dt.datetime(2024, 1, 1, tzinfo=UTC),
    dt.datetime(2024, 1, 1, 12, 30, tzinfo=UTC),
    dt.datetime(2023, 6, 1, 23, 59, 59, 999999, tzinfo=UTC),
    None,
]
LOCALS = [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 0, 0, 1), None]


def table(n: int = 48) -> pl.DataFrame:
    """Every combination the columns cycle through, with NULLs in each column."""

    def cycle(values: list, step: int) -> list:
        return [values[(i * step) % len(values)] for i in range(n)]

    return pl.DataFrame(
        {
            "sample_id": [f"s{i:03d}" for i in range(n)],
            "name": cycle(NAMES, 1),
            "n": cycle(NS, 3),
            "score": cycle(SCORES, 5),
            "flag": cycle([True, False, None], 1),
            "day": cycle(DAYS, 3),
            "at": cycle(ATS, 5),
            "local": cycle(LOCALS, 7),
        },
        schema=COLUMNS,
    )


def write_items(store: mx.MetadataStore, rows: pl.DataFrame) -> None:
    samples = rows.select("sample_id", pl.col("sample_id").alias("data"))
    increment = store.resolve_update("item", samples=samples)
    store.write("item", increment.to_compute().join(rows, on="sample_id"))


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory, postgres_server
) -> dict[str, mx.MetadataStore]:
    import psycopg

    graph = mx.FeatureGraph([mx.FeatureDefinition(ITEM, COLUMNS)])
    root: Path = tmp_path_factory.mktemp("filter_stores")
    # Named after this setup's folder: parallel workers may set the module up more than once.
    database = f"metaxy_{root.name}"
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{database}"')
    made = {
        "memory": mx.MemoryStore(graph),
        "duckdb": mx.DuckDBStore(root / "m.duckdb", graph),
        "delta": mx.DeltaStore(root / "delta", graph),
        "postgres": mx.SQLStore(postgres_server.replace("/postgres?", f"/{database}?"), graph),
    }
    rows = table()
    for store in made.values():
        write_items(store, rows)
    yield made
    for store in made.values():
        store.close()


def outcome(store: mx.MetadataStore, filters: list[str]) -> list[str] | str:
    """The ids a read keeps, or the SpecError it raises."""
    try:
        return store.read("item", filters=filters)["sample_id"].to_list()
    except mx.SpecError as exc:
        return f"SpecError: {exc}"


# -- random filters from the subset ----------------------------------------------------------

INT_LITERALS = st.sampled_from(["0", "1", "-1", "2", "3", "7", "-7", "10", "42"])
FLOAT_LITERALS = st.sampled_from(["0.3", "0.25", "2.5", "-2.5", "0.1", "1e10", "0.0", "1.5"])
TEXT_LITERALS = st.sampled_from(
    [
        "'a'",
        "'A'",
        "'abc'",
        "'x_y'",
        "''",
        "'Straße'",
        "'STRASSE'",
        "'é'",
        "'b''c'",
        "'\u03b1\u03c3'",
    ]
)
PATTERNS = st.sampled_from(
    [
        *("'a%'", "'%c'", "'%b%'", "'_'", "'A_c'", "'%'", "'x!_%' ESCAPE '!'"),
        *("'x!%y' ESCAPE '!'", "'%ß%'", "'_bc'", "''", "'%_%'", "'İ%'", "'x%y'"),
    ]
)


def _binary(children: st.SearchStrategy[str], ops: list[str]) -> st.SearchStrategy[str]:
    return st.tuples(children, st.sampled_from(ops), children).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})"
    )


def _ints() -> st.SearchStrategy[str]:
    base = st.one_of(st.just("n"), INT_LITERALS, st.just("length(name)"))
    return st.recursive(
        base,
        lambda inner: st.one_of(
            _binary(inner, ["+", "-", "*", "//", "%"]),
            inner.map(lambda x: f"abs({x})"),
            inner.map(lambda x: f"-({x})"),
            st.tuples(inner, INT_LITERALS).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
        ),
        max_leaves=4,
    )


def _floats() -> st.SearchStrategy[str]:
    base = st.one_of(st.just("score"), FLOAT_LITERALS, st.just("n"))
    return st.recursive(
        base,
        lambda inner: st.one_of(
            _binary(inner, ["+", "-", "*", "/"]),
            st.tuples(inner, st.integers(0, 3)).map(lambda t: f"round({t[0]}, {t[1]})"),
            inner.map(lambda x: f"round({x})"),
            inner.map(lambda x: f"abs({x})"),
            st.tuples(inner, FLOAT_LITERALS).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
        ),
        max_leaves=4,
    )


def _texts() -> st.SearchStrategy[str]:
    base = st.one_of(st.just("name"), st.just("sample_id"), TEXT_LITERALS)
    return st.recursive(
        base,
        lambda inner: st.one_of(
            inner.map(lambda x: f"lower({x})"),
            inner.map(lambda x: f"upper({x})"),
            st.tuples(inner, TEXT_LITERALS).map(lambda t: f"coalesce({t[0]}, {t[1]})"),
        ),
        max_leaves=3,
    )


COMPARE = ["=", "<>", "!=", "<", "<=", ">", ">="]
# Well-formed but mixing kinds: every store refuses them with the same SpecError.
MISTYPED = st.sampled_from(
    [
        "name = 1",
        "day = '2024-01-01'",
        "at > TIMESTAMP '2024-01-01 00:00:00'",
        "local > TIMESTAMP '2024-01-01 00:00:00+00:00'",
        "day < TIMESTAMP '2024-01-01 00:00:00'",
        "score // 2 = 1",
        "n + name > 1",
        "lower(n) = 'a'",
        "n",
        "flag = 1",
        "name LIKE 'a%' AND n",
    ]
)
DATES = st.sampled_from(["DATE '2024-01-01'", "DATE '2024-02-29'", "DATE '2000-01-01'"])
AT_LITERALS = st.sampled_from(
    [
        "TIMESTAMP '2024-01-01 00:00:00+00:00'",
        "TIMESTAMP '2024-01-01 13:30:00+01:00'",
        "TIMESTAMPTZ '2023-06-01 23:59:59.999999Z'",
    ]
)
LOCAL_LITERALS = st.sampled_from(["TIMESTAMP '2024-01-01 00:00:00'", "TIMESTAMP '2024-01-01'"])


def _comparisons() -> st.SearchStrategy[str]:
    def cmp(a: st.SearchStrategy[str], b: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.tuples(a, st.sampled_from(COMPARE), b).map(lambda t: f"{t[0]} {t[1]} {t[2]}")

    numbers = st.one_of(_ints(), _floats())
    values = st.one_of(INT_LITERALS, FLOAT_LITERALS, st.just("NULL"))
    return st.one_of(
        cmp(numbers, numbers),
        cmp(_texts(), _texts()),
        cmp(st.just("day"), DATES),
        cmp(st.just("at"), AT_LITERALS),
        cmp(st.just("local"), LOCAL_LITERALS),
        cmp(st.sampled_from(["flag", "TRUE", "FALSE"]), st.sampled_from(["flag", "TRUE"])),
        cmp(st.sampled_from(["n", "name", "score", "day"]), st.just("NULL")),
        st.tuples(numbers, st.lists(values, min_size=1, max_size=4), st.booleans()).map(
            lambda t: f"{t[0]} {'NOT ' if t[2] else ''}IN ({', '.join(t[1])})"
        ),
        st.tuples(_texts(), st.lists(TEXT_LITERALS, min_size=1, max_size=3)).map(
            lambda t: f"{t[0]} IN ({', '.join(t[1])})"
        ),
        st.tuples(numbers, values, values, st.booleans()).map(
            lambda t: f"{t[0]} {'NOT ' if t[3] else ''}BETWEEN {t[1]} AND {t[2]}"
        ),
        st.tuples(st.just("day"), DATES, DATES).map(lambda t: f"{t[0]} BETWEEN {t[1]} AND {t[2]}"),
        st.tuples(
            _texts(), st.sampled_from(["LIKE", "NOT LIKE", "ILIKE", "NOT ILIKE"]), PATTERNS
        ).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(st.sampled_from(list(COLUMNS)), st.sampled_from(["IS NULL", "IS NOT NULL"])).map(
            lambda t: f"{t[0]} {t[1]}"
        ),
        st.sampled_from(["flag", "flag IS TRUE", "flag IS NOT TRUE", "flag IS FALSE", "NULL"]),
        MISTYPED,
    )


def conditions() -> st.SearchStrategy[str]:
    return st.recursive(
        _comparisons(),
        lambda inner: st.one_of(_binary(inner, ["AND", "OR"]), inner.map(lambda x: f"NOT ({x})")),
        max_leaves=4,
    )


# -- the properties ----------------------------------------------------------------------------


@settings(  # max_examples from the profile (tests/conftest.py): 40, or 400 when thorough
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(filters=st.lists(conditions(), min_size=1, max_size=4))
def test_random_filters_keep_the_same_rows_on_every_store(stores, filters):
    for text in filters:
        results = {name: outcome(store, [text]) for name, store in stores.items()}
        assert results["duckdb"] == results["memory"], text
        assert results["delta"] == results["memory"], text
    combined = {name: outcome(store, filters) for name, store in stores.items()}
    assert combined["duckdb"] == combined["memory"] == combined["delta"], filters


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # round is half away from zero on the double x * 10^d, on every store.
        ("round(score, 1) = 0.3", {0.25, 0.3, 0.1 + 0.2, 1 / 3}),
        ("round(score) = 3", {2.5}),
        ("round(score) = -3", {-2.5}),
        ("score / 10 = 0.025", {0.25}),  # true division, also by a constant
    ],
)
def test_float_functions_select_the_documented_rows(stores, text, expected):
    for name, store in stores.items():
        kept = store.read("item", filters=[text])["score"].to_list()
        assert set(kept) == expected, (name, kept)


@pytest.mark.parametrize(
    ("text", "column", "expected"),
    [
        ("n // 2 = -4", "n", [-7]),  # floored, like Python
        ("n % 3 = 2", "n", [x for x in NS if x is not None and x % 3 == 2]),
        ("n / 0 IS NULL", "n", NS),  # a zero divisor gives NULL, not inf and not an error
        ("n // 0 IS NULL", "n", NS),
        ("n IN (1, NULL)", "n", [1]),
        ("NOT (n IN (1, NULL))", "n", []),  # three-valued: never true with a NULL listed
        ("n = NULL", "n", []),
        ("upper(name) = 'STRASSE'", "name", []),  # ASCII-only case mapping: 'ß' stays
        ("upper(name) = 'STRAßE'", "name", ["Straße"]),
        ("name ILIKE 'a%'", "name", ["a", "A", "abc", "Abc"]),
        ("name LIKE 'x!%y' ESCAPE '!'", "name", ["x%y"]),
        ("length(name) = 2", "name", ["\u0391\u03a3"]),  # code points
        ("at = TIMESTAMP '2024-01-01 13:30:00+01:00'", "at", [ATS[1]]),  # instants
    ],
)
def test_documented_semantics_on_every_store(stores, text, column, expected):
    for name, store in stores.items():
        kept = store.read("item", filters=[text])[column].to_list()
        assert sorted(set(kept), key=repr) == sorted(set(expected), key=repr), (name, kept)


# -- the same check with the protection switched off ------------------------------------------

# Filters on which raw engine SQL (DuckDB's parser, polars' SQL) selected different rows.
DIVERGENT = ["round(score, 1) = 0.3", "lower(name) = 'i\u0307stanbul'"]


def _raw_polars(frame, flt):
    return nw.from_native(frame.to_native().filter(pl.sql_expr(flt.text)))


def _raw_duckdb(frame, flt):
    return nw.from_native(frame.to_native().filter(flt.text))


@pytest.mark.parametrize("protection", ["on", "off"])
def test_the_comparison_catches_engines_that_disagree(stores, monkeypatch, protection):
    """With each engine running the user's text itself (the old behaviour), the same
    comparison finds stores that keep different rows; with the filter language, none."""
    if protection == "off":
        for name, store in stores.items():
            if name == "postgres":  # no raw path into Ibis here: it keeps the language
                continue
            raw = _raw_duckdb if name == "duckdb" else _raw_polars
            monkeypatch.setattr(store.engine, "filter", raw)
    differing = [
        text
        for text in DIVERGENT
        if len({repr(outcome(store, [text])) for store in stores.values()}) > 1
    ]
    assert differing == ([] if protection == "on" else DIVERGENT)
