"""Our side of the benchmark: metaxy_core's stores on the files of data.py.

Run it in the project venv:
    .venv/bin/python benchmarks/ours_runner.py [--n 10000 100000 1000000]
        [--graph simple wide] [--phase new stale] [--store memory duckdb delta postgres]
        [--rounds 5] [--postgres-url postgresql://...]

`postgres` is a SQLStore on a PostgreSQL server: the one at --postgres-url, else one started
from the `pgserver` package for the run. Each round copies the phase's database
(CREATE DATABASE ... TEMPLATE), as the file stores copy their directory.

Same protocol as peer_runner.py: the phase's starting state is written once (untimed), each
round opens a fresh copy of it and times only `store.resolve_update("leaf")`, collected into
polars. The increment is checked (new: N new rows; stale: exactly the 10% changed ids).
One JSON line per case, with the median of the rounds.
"""

import argparse
import contextlib
import gc
import itertools
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import (
    CHANGED_ROOT,
    DEFAULT_DATA_DIR,
    DEFAULT_NS,
    GRAPHS,
    expected,
    load_roots,
    load_stale_ids,
)

import metaxy_core as mx


def build_graph(name: str) -> mx.FeatureGraph:
    spec = GRAPHS[name]
    roots = [
        mx.FeatureSpec(r, id_columns=["sample_id"], fields=fields)
        for r, fields in spec["roots"].items()
    ]
    leaf = mx.FeatureSpec(
        "leaf",
        id_columns=["sample_id"],
        fields=[
            mx.FieldSpec(f, deps=[mx.FieldDep(r, fs) for r, fs in parents.items()])
            for f, parents in spec["leaf"].items()
        ],
        deps=list(spec["roots"]),
    )
    return mx.FeatureGraph([*roots, leaf])


def opener(
    kind: str, graph: mx.FeatureGraph, settings: mx.HashSettings
) -> Callable[[Path], mx.MetadataStore]:
    if kind == "memory":
        return lambda where: mx.MemoryStore(graph, hash_settings=settings)
    if kind == "duckdb":
        return lambda where: mx.DuckDBStore(where / "store.duckdb", graph, hash_settings=settings)
    if kind == "delta":
        return lambda where: mx.DeltaStore(str(where / "delta"), graph, hash_settings=settings)
    if kind == "postgres":
        return lambda where: mx.SQLStore(POSTGRES.url(where.name), graph, hash_settings=settings)
    raise ValueError(kind)


class Postgres:
    """Databases of one PostgreSQL server, named after the runner's store directories."""

    def __init__(self) -> None:
        self.server = ""
        self._numbers = itertools.count()

    def url(self, name: str) -> str:
        return re.sub(r"/postgres(\?|$)", rf"/{name}\1", self.server, count=1)

    def execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.server, autocommit=True) as con:
            con.execute(sql)

    def copy(self, source: str, target: str) -> None:
        self.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')

    def fresh(self) -> str:
        """A new database name, unique in this run."""
        return f"bench_{next(self._numbers)}"


POSTGRES = Postgres()


@contextlib.contextmanager
def postgres_server(url: str | None) -> Iterator[None]:
    """Use the server at `url`, or start one from pgserver for the run."""
    if url is not None:
        POSTGRES.server = url
        yield
        return
    import pgserver

    data = tempfile.mkdtemp(prefix="metaxy-bench-pg-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pgserver.get_server(data, cleanup_mode="stop")
    POSTGRES.server = server.get_uri()
    try:
        yield
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


def write_root(store: mx.MetadataStore, root: str, frame: pl.DataFrame) -> None:
    increment = store.resolve_update(root, samples=frame)
    store.write(root, increment.to_compute())


def setup(
    store: mx.MetadataStore,
    graph_name: str,
    phase: str,
    roots: dict[str, pl.DataFrame],
    rewrite: pl.DataFrame,
) -> None:
    for root, frame in roots.items():
        write_root(store, root, frame)
    if phase == "stale":
        store.write("leaf", store.resolve_update("leaf").new)
        write_root(store, CHANGED_ROOT, rewrite)


def check(increment: mx.Increment, phase: str, n: int, stale_ids: set[str]) -> None:
    counts = increment.counts()
    want = expected(n)[phase]
    assert counts["new"] == want["new"] and counts["stale"] == want["stale"], (phase, counts)
    assert counts["orphaned"] == 0, counts
    if phase == "stale":
        assert set(increment.stale["sample_id"]) == stale_ids


def run_case(
    kind: str, graph_name: str, phase: str, n: int, rounds: int, data_dir: str, hash_name: str
) -> dict:
    graph = build_graph(graph_name)
    open_store = opener(kind, graph, mx.HashSettings(hash_name))
    roots, rewrite = load_roots(data_dir, graph_name, n)
    stale_ids = load_stale_ids(data_dir, graph_name, n) if phase == "stale" else set()
    times, cpu_times, paths = [], [], set()
    load1 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="metaxy-bench-") as tmp:
        template = Path(tmp) / (POSTGRES.fresh() if kind == "postgres" else "template")
        template.mkdir()
        if kind == "postgres":
            POSTGRES.execute(f'CREATE DATABASE "{template.name}"')
        base = open_store(template)
        setup(base, graph_name, phase, roots, rewrite)
        base.close()
        for i in range(rounds):
            where = Path(tmp) / (POSTGRES.fresh() if kind == "postgres" else f"round{i}")
            if kind == "postgres":
                POSTGRES.copy(template.name, where.name)
                store = open_store(where)
            elif kind == "memory":
                where.mkdir()
                store = open_store(where)
                setup(store, graph_name, phase, roots, rewrite)
            else:
                shutil.copytree(template, where)
                store = open_store(where)
            gc.collect()
            start, cpu = time.perf_counter(), time.process_time()
            increment = store.resolve_update("leaf")
            times.append((time.perf_counter() - start) * 1000)
            cpu_times.append((time.process_time() - cpu) * 1000)
            check(increment, phase, n, stale_ids)
            paths.add(increment.resolved_by)
            store.close()
            shutil.rmtree(where, ignore_errors=True)
            if kind == "postgres":
                POSTGRES.execute(f'DROP DATABASE "{where.name}"')
        if kind == "postgres":
            POSTGRES.execute(f'DROP DATABASE "{template.name}"')
    return {
        "impl": "ours",
        "store": kind,
        "hash": hash_name,
        "graph": graph_name,
        "phase": phase,
        "n": n,
        "median_ms": round(statistics.median(times), 1),
        "rounds": [round(t, 1) for t in times],
        "median_cpu_ms": round(statistics.median(cpu_times), 1),
        "load1": round(load1, 2),
        "resolved_by": sorted(paths),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p.add_argument("--n", type=int, nargs="+", default=list(DEFAULT_NS))
    p.add_argument("--graph", nargs="+", default=list(GRAPHS), choices=list(GRAPHS))
    p.add_argument("--phase", nargs="+", default=["new", "stale"], choices=["new", "stale"])
    p.add_argument("--store", nargs="+", default=["memory", "duckdb", "delta"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--hash", default="xxh3_64", choices=[a.value for a in mx.HashAlgorithm])
    p.add_argument("--postgres-url", default=None, help="default: a pgserver for the run")
    args = p.parse_args()
    with (
        postgres_server(args.postgres_url) if "postgres" in args.store else contextlib.nullcontext()
    ):
        run_all(args)


def run_all(args: argparse.Namespace) -> None:
    for kind in args.store:
        for graph_name in args.graph:
            for n in args.n:
                for phase in args.phase:
                    print(
                        json.dumps(
                            run_case(
                                kind, graph_name, phase, n, args.rounds, args.data_dir, args.hash
                            )
                        ),
                        flush=True,
                    )


if __name__ == "__main__":
    main()
