"""Id columns with odd names: every store quotes them, and hard delete removes what it says.

Column names may be any printable text. On Delta a backtick in an id column name broke
hard delete, and a crafted name (closing the quote, then `OR 1=1`) deleted every row
while reporting one. Each name is tried on every store: write three samples, hard-delete
one (plus one that was never written), and only that one is gone, reported as 1.
"""

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

import metaxy_core as mx

NAMES = [
    "tick`name",
    "`",
    "quote'name",
    'double"quote',
    "has space",
    "x` = s.`x` OR 1=1 OR t.`x",
    'id" = s."id" OR 1=1 OR t."id',
    "or 1=1",
    "a.b",
    "日本語 ünïcode",
    "select",
]
STORES: dict[str, Callable[[mx.FeatureGraph, Path], mx.MetadataStore]] = {
    "memory": lambda g, _: mx.MemoryStore(g),
    "duckdb": lambda g, d: mx.DuckDBStore(d / "m.duckdb", g),
    "delta": lambda g, d: mx.DeltaStore(d / "delta", g),
}


def doc_graph(*ids: str) -> mx.FeatureGraph:
    return mx.FeatureGraph([mx.FeatureSpec("doc", id_columns=list(ids), fields=["text"])])


def write_docs(store: mx.MetadataStore, ids: dict[str, list[str]]) -> None:
    samples = pl.DataFrame({**ids, "text": next(iter(ids.values()))})
    rows = store.resolve_update("doc", samples=samples).new
    store.write("doc", rows.with_columns(title=pl.lit("t")))


@pytest.mark.parametrize("store_name", STORES)
@pytest.mark.parametrize("name", NAMES)
def test_hard_delete_removes_only_the_named_sample(tmp_path, store_name, name):
    with STORES[store_name](doc_graph(name), tmp_path) as store:
        write_docs(store, {name: ["a", "b", "c"]})
        removed = store.delete("doc", pl.DataFrame({name: ["b", "never-written"]}), hard=True)
        assert removed == 1
        assert store.read("doc")[name].to_list() == ["a", "c"]
        assert sorted(store.history("doc")[name].to_list()) == ["a", "c"]


@pytest.mark.parametrize("store_name", STORES)
@pytest.mark.parametrize(
    "second",
    [
        # Pasted into the old Delta predicate, this one matched every row ("OR 1=1").
        "k` = s.`k` OR 1=1 OR t.`k` = s.`k",
        "second`col",
    ],
)
def test_hard_delete_on_two_odd_id_columns_matches_both(tmp_path, store_name, second):
    with STORES[store_name](doc_graph("k", second), tmp_path) as store:
        write_docs(store, {"k": ["a", "a", "b"], second: ["1", "2", "1"]})
        removed = store.delete("doc", pl.DataFrame({"k": ["a"], second: ["2"]}), hard=True)
        assert removed == 1
        assert store.read("doc").select("k", second).rows() == [("a", "1"), ("b", "1")]


@pytest.mark.parametrize("store_name", STORES)
def test_hard_delete_counts_samples_not_rows(tmp_path, store_name):
    """A sample written twice (and soft-deleted) is one removed sample, its history gone."""
    with STORES[store_name](doc_graph("doc_id"), tmp_path) as store:
        write_docs(store, {"doc_id": ["a", "b"]})
        samples = pl.DataFrame({"doc_id": ["a", "b"], "text": ["a2", "b"]})
        stale = store.resolve_update("doc", samples=samples).stale
        store.write("doc", stale.with_columns(title=pl.lit("t2")))
        store.delete("doc", pl.DataFrame({"doc_id": ["a"]}))
        assert store.history("doc").height == 4
        assert store.delete("doc", pl.DataFrame({"doc_id": ["a", "zzz"]}), hard=True) == 1
        assert store.history("doc")["doc_id"].to_list() == ["b"]
        assert store.delete("doc", pl.DataFrame({"doc_id": ["a"]}), hard=True) == 0
