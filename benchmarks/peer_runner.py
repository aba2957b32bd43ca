"""Peer side of the benchmark: the published metaxy 0.1.11 on the files of data.py.

Run it in the peer venv (bash benchmarks/setup_peer.sh):
    benchmarks/.peer-venv/bin/python benchmarks/peer_runner.py [--n 10000 100000 1000000]
        [--graph simple wide] [--phase new stale] [--store duckdb delta duckdb-sql-md5] [--rounds 5]

For each case the phase's starting state is written once into a store (untimed setup). Each
round copies that store to a new place (a fresh directory / database file), opens it with a
fresh store object and times only `store.resolve_update(leaf)` (eager: the increment is
collected). It checks the increment (new: N new rows; stale: exactly the 10% changed ids,
nothing new or orphaned) and prints one JSON line per case with the median of the rounds.

Stores:
  delta   DeltaMetadataStore (polars versioning engine; its only engine)
  duckdb  DuckDBMetadataStore with versioning_engine="polars". Its SQL engine needs the
          `hashfuncs` community extension, which it installs from the network when the store
          opens; offline that fails, so OfflineDuckDB below skips loading extensions.
  duckdb-sql-md5  the same store on its native SQL engine (ibis -> DuckDB), with
          hash_algorithm=MD5: the one hash its SQL engine has without that extension.
delta and duckdb use the peer's default hash, xxhash32 (via polars-hash). All use the peer's
default hash truncation (8 characters).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import tempfile
import time
import types
import warnings
from pathlib import Path

import metaxy as mx
import polars as pl
from data import (
    CHANGED_ROOT,
    DEFAULT_DATA_DIR,
    DEFAULT_NS,
    GRAPHS,
    expected,
    load_roots,
    load_stale_ids,
)
from metaxy import HashAlgorithm
from metaxy.ext.duckdb import DuckDBMetadataStore
from metaxy.ext.polars.handlers.delta import DeltaMetadataStore

warnings.filterwarnings("ignore")  # AUTO_CREATE_TABLES and polars-materialization notices
# What mx.init() would set up from a metaxy.toml. Unset, the peer rebuilds a default config
# (pydantic-settings, env lookups) on every MetaxyConfig.get(), ~20 times per resolve.
mx.MetaxyConfig.set(mx.MetaxyConfig(project="bench"))


class OfflineDuckDB(DuckDBMetadataStore):
    """The peer's DuckDB store, minus the network install of its hash extension."""

    def _load_extensions(self) -> None:
        pass


STORES = {  # name -> what the JSON line says about it
    "duckdb": {"engine": "polars", "hash": "xxhash32 (peer default, polars-hash)"},
    "delta": {"engine": "polars", "hash": "xxhash32 (peer default, polars-hash)"},
    "duckdb-sql-md5": {"engine": "duckdb sql (ibis)", "hash": "md5 (duckdb built-in)"},
}


def make_store(kind: str, where: Path) -> mx.MetadataStore:
    where.mkdir(parents=True, exist_ok=True)
    if kind == "delta":
        return DeltaMetadataStore(where / "delta")
    if kind == "duckdb":
        return OfflineDuckDB(
            where / "store.duckdb", versioning_engine="polars", auto_create_tables=True
        )
    if kind == "duckdb-sql-md5":
        return OfflineDuckDB(
            where / "store.duckdb",
            versioning_engine="native",
            hash_algorithm=HashAlgorithm.MD5,
            auto_create_tables=True,
        )
    raise ValueError(kind)


def feature(name: str, spec: mx.FeatureSpec) -> type[mx.BaseFeature]:
    """`class <name>(mx.BaseFeature, spec=spec): sample_id: str`, registered in the active graph."""
    body = {
        "__annotations__": {"sample_id": str},
        "__metaxy_project__": "bench",
        "__module__": __name__,
    }
    return types.new_class(name, (mx.BaseFeature,), {"spec": spec}, lambda ns: ns.update(body))


def build_graph(graph: str) -> tuple[mx.FeatureGraph, dict[str, type], type]:
    g = mx.FeatureGraph()
    desc = GRAPHS[graph]
    with g.use():
        roots = {
            key: feature(
                key.title(), mx.FeatureSpec(key=key, id_columns=["sample_id"], fields=fields)
            )
            for key, fields in desc["roots"].items()
        }
        leaf_fields = [
            mx.FieldSpec(
                key=field,
                code_version="1",
                deps=[
                    mx.FieldDep(feature=root, fields=parents)
                    for root, parents in parents_by_root.items()
                ],
            )
            for field, parents_by_root in desc["leaf"].items()
        ]
        leaf = feature(
            "Leaf",
            mx.FeatureSpec(
                key="leaf",
                id_columns=["sample_id"],
                deps=[mx.FeatureDep(feature=root) for root in desc["roots"]],
                fields=leaf_fields,
            ),
        )
    return g, roots, leaf


def root_samples(df: pl.DataFrame) -> pl.DataFrame:
    """A root's rows as the peer wants them: ids + a struct of per-field input versions."""
    fields = [c for c in df.columns if c != "sample_id"]
    return df.select("sample_id", pl.struct(fields).alias("metaxy_provenance_by_field"))


def prepare(
    store_kind: str, graph: str, phase: str, roots: dict, stale_root: pl.DataFrame, where: Path
):
    """Write the phase's starting state into a new store at `where` (untimed setup)."""
    g, root_features, leaf = build_graph(graph)
    with g.use():
        store = make_store(store_kind, where)
        with store.open("w"):
            for key, df in roots.items():
                store.write(root_features[key], df)
            if phase == "stale":
                store.write(leaf, store.resolve_update(leaf).new)  # the leaf, fully computed
                # then a full rewrite of the root, audio changed for 10%
                store.write(root_features[CHANGED_ROOT], stale_root)
    return g, leaf


def one_round(store_kind: str, g: mx.FeatureGraph, leaf: type, prepared: Path, workdir: Path):
    """Copy the prepared store to a fresh place, open it with a new store object, time resolve."""
    where = Path(tempfile.mkdtemp(dir=workdir)) / "store"
    shutil.copytree(prepared, where)
    try:
        with g.use():
            store = make_store(store_kind, where)
            with store.open("r"):
                gc.collect()
                t0, c0 = time.perf_counter(), time.process_time()
                inc = store.resolve_update(leaf)
                ms, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
        ids = set(inc.stale["sample_id"].to_list())
        return (
            ms,
            cpu,
            {"new": len(inc.new), "stale": len(inc.stale), "orphaned": len(inc.orphaned)},
            ids,
        )
    finally:
        shutil.rmtree(where.parent, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description="peer (metaxy 0.1.11) resolve_update timings")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p.add_argument(
        "--work-dir", default=None, help="where scratch stores go (default: system temp)"
    )
    p.add_argument("--n", type=int, nargs="+", default=list(DEFAULT_NS))
    p.add_argument("--graph", nargs="+", default=list(GRAPHS), choices=list(GRAPHS))
    p.add_argument("--phase", nargs="+", default=["new", "stale"], choices=["new", "stale"])
    p.add_argument("--store", nargs="+", default=list(STORES), choices=list(STORES))
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    workdir = Path(args.work_dir or tempfile.gettempdir())
    workdir.mkdir(parents=True, exist_ok=True)

    for n in args.n:
        for graph in args.graph:
            raw_roots, raw_stale = load_roots(args.data_dir, graph, n)
            roots = {k: root_samples(v) for k, v in raw_roots.items()}
            stale_root = root_samples(raw_stale)
            stale_ids = load_stale_ids(args.data_dir, graph, n)
            for phase in args.phase:
                want = expected(n)[phase]
                for store_kind in args.store:
                    prepared = Path(tempfile.mkdtemp(dir=workdir)) / "prepared"
                    g, leaf = prepare(store_kind, graph, phase, roots, stale_root, prepared)
                    rounds, cpus, load1 = [], [], os.getloadavg()[0]
                    for _ in range(args.rounds):
                        ms, cpu, got, ids = one_round(store_kind, g, leaf, prepared, workdir)
                        if got != {**want, "orphaned": 0} or (
                            phase == "stale" and ids != stale_ids
                        ):
                            case = f"peer {store_kind} {graph} {phase} n={n}"
                            raise SystemExit(f"{case}: increment {got}, want {want}")
                        rounds.append(round(ms, 2))
                        cpus.append(cpu)
                    shutil.rmtree(prepared.parent)
                    line = {
                        "impl": "peer",
                        "store": store_kind,
                        "graph": graph,
                        "phase": phase,
                        "n": n,
                        "median_ms": round(statistics.median(rounds), 2),
                        "rounds": rounds,
                        "median_cpu_ms": round(statistics.median(cpus), 2),
                        "load1": round(load1, 2),
                        "increment": want,
                        **STORES[store_kind],
                    }
                    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
