"""The floor: a bare join + hash + diff of the same data, no metaxy, no history.

Run in the project venv:
    .venv/bin/python benchmarks/floor.py [--n 10000 100000 1000000] [--graph ...] [--phase ...]
        [--engine polars duckdb] [--rounds 5]

What is timed is the least a correct resolve of the leaf must do, given the inputs in memory:
  1. join the roots on sample_id,
  2. per leaf field, hash code_version + field key + its parent fields' input versions,
     then hash the field hashes into one provenance per sample,
  3. full-join that with the stored leaf (sample_id, provenance) and keep new / stale /
     orphaned rows, collected into one frame with a `status` column. When the stored leaf
     is empty (phase `new`) step 3 is skipped: every row is new.
The stored leaf holds exactly one row per sample (no history, no dedup, no system columns).
Setup (untimed): load the parquet files; for `stale`, compute the stored leaf from the
original roots with the same code, then swap in video.stale.parquet.

Hashes: floor-polars uses polars-hash xxh3_64 (u64); floor-duckdb uses DuckDB's built-in md5
(hex string) on an in-memory database.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time

import duckdb
import polars as pl
import polars_hash as plh
from data import CHANGED_ROOT, DEFAULT_DATA_DIR, DEFAULT_NS, GRAPHS, expected, load_roots

CODE_VERSION = "1"


# ---------------------------------------------------------------- polars + polars-hash xxh3_64
def polars_expected(graph: str, roots: dict[str, pl.DataFrame]) -> pl.LazyFrame:
    desc = GRAPHS[graph]
    names = list(roots)
    joined = roots[names[0]].lazy()
    for name in names[1:]:
        joined = joined.join(roots[name].lazy(), on="sample_id", how="inner", suffix=f"_{name}")
    field_hashes = [
        plh.concat_str(
            [pl.lit(CODE_VERSION), pl.lit(field)]
            + [pl.col(p) for parents in deps.values() for p in parents],
            separator="|",
        )
        .nchash.xxh3_64()
        .alias(field)
        for field, deps in desc["leaf"].items()
    ]
    fields = list(desc["leaf"])
    provenance = plh.concat_str(
        [pl.col(f).cast(pl.Utf8) for f in fields], separator="|"
    ).nchash.xxh3_64()
    return joined.select("sample_id", *field_hashes).with_columns(provenance.alias("provenance"))


def polars_resolve(
    graph: str, roots: dict[str, pl.DataFrame], stored: pl.DataFrame
) -> pl.DataFrame:
    exp = polars_expected(graph, roots)
    if stored.height == 0:  # nothing stored: everything is new, no diff needed
        return exp.with_columns(pl.lit("new").alias("status")).collect()
    both = exp.join(stored.lazy(), on="sample_id", how="full", coalesce=True, suffix="_stored")
    status = (
        pl.when(pl.col("provenance_stored").is_null())
        .then(pl.lit("new"))
        .when(pl.col("provenance").is_null())
        .then(pl.lit("orphaned"))
        .otherwise(pl.lit("stale"))
    )
    keep = (
        pl.col("provenance_stored").is_null()
        | pl.col("provenance").is_null()
        | (pl.col("provenance") != pl.col("provenance_stored"))
    )
    return both.filter(keep).with_columns(status.alias("status")).collect()


def run_polars(
    graph: str, phase: str, roots: dict, stale_root: pl.DataFrame, rounds: int
) -> tuple[list, dict]:
    stored = polars_expected(graph, roots).select("sample_id", "provenance").collect()
    if phase == "new":
        stored = stored.clear()
    else:
        roots = {**roots, CHANGED_ROOT: stale_root}
    times = []
    for _ in range(rounds):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        inc = polars_resolve(graph, roots, stored)
        times.append(((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000))
    return times, counts(inc)


# ---------------------------------------------------------------- duckdb + md5
def duckdb_expected_sql(graph: str) -> str:
    desc = GRAPHS[graph]
    names = list(desc["roots"])
    source = names[0] + "".join(f" JOIN {n} USING (sample_id)" for n in names[1:])
    field_hashes = ", ".join(
        "md5(concat_ws('|', '{cv}', '{f}', {cols})) AS {f}".format(
            cv=CODE_VERSION,
            f=field,
            cols=", ".join(f"{r}.{p}" for r, parents in deps.items() for p in parents),
        )
        for field, deps in desc["leaf"].items()
    )
    provenance = "md5(concat_ws('|', {}))".format(", ".join(desc["leaf"]))
    return (
        f"SELECT *, {provenance} AS provenance FROM "
        f"(SELECT {names[0]}.sample_id AS sample_id, {field_hashes} FROM {source})"
    )


def duckdb_resolve_sql(graph: str, leaf_empty: bool) -> str:
    if leaf_empty:  # nothing stored: everything is new, no diff needed
        return f"SELECT *, 'new' AS status FROM ({duckdb_expected_sql(graph)})"
    return f"""
        WITH e AS ({duckdb_expected_sql(graph)})
        SELECT coalesce(e.sample_id, l.sample_id) AS sample_id, e.* EXCLUDE (sample_id),
               l.provenance AS provenance_stored,
               CASE WHEN l.sample_id IS NULL THEN 'new'
                    WHEN e.sample_id IS NULL THEN 'orphaned' ELSE 'stale' END AS status
        FROM e FULL JOIN leaf l ON e.sample_id = l.sample_id
        WHERE l.sample_id IS NULL OR e.sample_id IS NULL OR e.provenance <> l.provenance
    """


def run_duckdb(
    graph: str, phase: str, roots: dict, stale_root: pl.DataFrame, rounds: int
) -> tuple[list, dict]:
    con = duckdb.connect(":memory:")
    for name, df in roots.items():
        con.register("src", df)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM src")
        con.unregister("src")
    con.execute(
        f"CREATE TABLE leaf AS SELECT sample_id, provenance FROM ({duckdb_expected_sql(graph)})"
    )
    if phase == "new":
        con.execute("DELETE FROM leaf")
    else:
        con.register("src", stale_root)
        con.execute(f"CREATE OR REPLACE TABLE {CHANGED_ROOT} AS SELECT * FROM src")
        con.unregister("src")
    times = []
    for _ in range(rounds):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        leaf_empty = con.execute("SELECT NOT EXISTS (SELECT 1 FROM leaf)").fetchall()[0][0]
        inc = con.sql(duckdb_resolve_sql(graph, leaf_empty)).pl()
        times.append(((time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000))
    con.close()
    return times, counts(inc)


def counts(inc: pl.DataFrame) -> dict[str, int]:
    got = dict(inc.group_by("status").len().iter_rows())
    return {k: got.get(k, 0) for k in ("new", "stale", "orphaned")}


ENGINES = {
    "polars": (run_polars, "xxh3_64 (polars-hash)"),
    "duckdb": (run_duckdb, "md5 (duckdb built-in)"),
}


def main() -> None:
    p = argparse.ArgumentParser(description="bare join+hash floor timings")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p.add_argument("--n", type=int, nargs="+", default=list(DEFAULT_NS))
    p.add_argument("--graph", nargs="+", default=list(GRAPHS), choices=list(GRAPHS))
    p.add_argument("--phase", nargs="+", default=["new", "stale"], choices=["new", "stale"])
    p.add_argument("--engine", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    for n in args.n:
        for graph in args.graph:
            roots, stale_root = load_roots(args.data_dir, graph, n)
            for phase in args.phase:
                want = expected(n)[phase]
                for engine in args.engine:
                    run, hash_name = ENGINES[engine]
                    load1 = os.getloadavg()[0]
                    times, got = run(graph, phase, roots, stale_root, args.rounds)
                    if got != {**want, "orphaned": 0}:
                        raise SystemExit(
                            f"floor-{engine} {graph} {phase} n={n}: increment {got}, want {want}"
                        )
                    rounds = [round(t, 2) for t, _ in times]
                    cpu = statistics.median(c for _, c in times)
                    line = {
                        "impl": f"floor-{engine}",
                        "store": "memory",
                        "graph": graph,
                        "phase": phase,
                        "n": n,
                        "median_ms": round(statistics.median(rounds), 2),
                        "rounds": rounds,
                        "median_cpu_ms": round(cpu, 2),
                        "load1": round(load1, 2),
                        "increment": want,
                        "hash": hash_name,
                    }
                    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
