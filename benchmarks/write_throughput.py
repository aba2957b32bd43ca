"""Write throughput: `store.write` of N root rows against writing the same rows raw.

Run in the project venv (data from benchmarks/data.py, generated if missing):
    .venv/bin/python benchmarks/write_throughput.py [--n 1000000] [--store duckdb delta memory]
        [--rounds 3]

Rows: the `video` root of graph `simple` as `resolve_update` hands them to a compute (ids,
input columns, provenance) plus one user column. Timed per store, each round in a fresh
directory:
  first    the write into an empty store (validation, stamping, the append)
  rewrite  a full rewrite of every sample over the first write (for Delta this includes
           rebuilding the current-rows checkpoint, see stores/_delta_current.py)
Opening the store is not timed. Raw, the same rows with no metaxy: `raw_in` writes
the frame handed to `write`, `raw_stored` the stamped frame as the store keeps it (every
system column); as a parquet file (the Delta and memory stores' baseline) and as a DuckDB
`CREATE TABLE AS` into a fresh file. Ratios in the JSON lines: store / raw_stored (the
same bytes) and store / raw_in (the caller's frame).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ours_runner as R
from data import DEFAULT_DATA_DIR, load_roots

import metaxy_core as mx


def median_ms(fn: Callable[[Path], float], rounds: int) -> float:
    """Median of what `fn` measured (ms), each round in a fresh directory."""
    times = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="metaxy-write-") as tmp:
            times.append(fn(Path(tmp)))
    return round(statistics.median(times), 1)


def raw_parquet(rows: pl.DataFrame) -> Callable[[Path], float]:
    def write(where: Path) -> float:
        start = time.perf_counter()
        rows.write_parquet(where / "rows.parquet")
        return (time.perf_counter() - start) * 1000

    return write


def raw_duckdb(rows: pl.DataFrame) -> Callable[[Path], float]:
    def write(where: Path) -> float:
        con = duckdb.connect(str(where / "raw.duckdb"))
        start = time.perf_counter()
        con.register("rows_view", rows.to_arrow())
        con.execute("CREATE TABLE rows AS SELECT * FROM rows_view")
        con.close()
        return (time.perf_counter() - start) * 1000

    return write


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--store", nargs="+", default=["duckdb", "delta", "memory"])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    roots, _ = load_roots(args.data_dir, "simple", args.n)
    graph = R.build_graph("simple")
    rows = (
        mx.MemoryStore(graph)
        .resolve_update("video", samples=roots["video"])
        .to_compute()
        .with_columns(pl.lit("clip.mp4").alias("path"))
    )
    stamped = mx.MemoryStore(graph).prepare_rows("video", rows)
    raw = {
        "parquet": (raw_parquet(rows), raw_parquet(stamped)),
        "duckdb": (raw_duckdb(rows), raw_duckdb(stamped)),
    }
    baseline = {"delta": "parquet", "memory": "parquet", "duckdb": "duckdb"}
    raw_ms = {
        kind: (median_ms(raw_in, args.rounds), median_ms(raw_stored, args.rounds))
        for kind, (raw_in, raw_stored) in raw.items()
    }
    for kind, (raw_in, raw_stored) in raw_ms.items():
        report(impl=f"raw-{kind}", n=args.n, raw_in_ms=raw_in, raw_stored_ms=raw_stored)
    for kind in args.store:
        open_store = R.opener(kind, graph, mx.HashSettings())

        firsts, rewrites = [], []
        for _ in range(args.rounds):  # only the writes are timed, not opening the store
            with (
                tempfile.TemporaryDirectory(prefix="metaxy-write-") as tmp,
                open_store(Path(tmp)) as store,
            ):
                for times in (firsts, rewrites):
                    start = time.perf_counter()
                    store.write("video", rows)
                    times.append((time.perf_counter() - start) * 1000)
        first_ms = round(statistics.median(firsts), 1)
        rewrite_ms = round(statistics.median(rewrites), 1)
        raw_in, raw_stored = raw_ms[baseline[kind]]
        report(
            impl="ours",
            store=kind,
            n=args.n,
            first_ms=first_ms,
            rewrite_ms=rewrite_ms,
            baseline=f"raw-{baseline[kind]}",
            first_vs_raw_stored=round(first_ms / raw_stored, 2),
            first_vs_raw_in=round(first_ms / raw_in, 2),
            rewrite_vs_raw_stored=round(rewrite_ms / raw_stored, 2),
        )


def report(**fields) -> None:
    print(
        json.dumps({"bench": "write", **fields, "load1": round(os.getloadavg()[0], 2)}), flush=True
    )


if __name__ == "__main__":
    main()
