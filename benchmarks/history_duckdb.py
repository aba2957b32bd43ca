"""DuckDBStore resolve times on the `simple` graph, and how they hold up as history grows.

Run in the project venv (data from benchmarks/data.py, generated if missing):
    .venv/bin/python benchmarks/history_duckdb.py [--n 1000000] [--rewrites 10] [--rounds 3]

Prints JSON lines:
  phase new:    root written, leaf empty           -> resolve_update(leaf) = N new
  phase stale:  leaf written, root rewritten in full with 10% changed audio -> N/10 stale
  history:      after 1 and after R full rewrites of root and leaf, resolve_update(leaf)
                (nothing to do, but the whole join, hash and diff still runs); the ratio
                is what issue 3 item 6 bounds (within 2x).
Only resolve_update(leaf, full=True) (the full diff, the watermark ignored) is timed;
writes are setup. Fresh database file per run.
"""

import argparse
import json
import tempfile
from pathlib import Path

from data import DEFAULT_DATA_DIR, load_roots
from history_common import full_rows, simple_graph, timed

import metaxy_core as mx


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--rewrites", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    roots, stale_root = load_roots(args.data_dir, "simple", args.n)
    graph = simple_graph()
    video_rows = full_rows(graph, "video", roots["video"])
    leaf_rows = full_rows(graph, "leaf", None, upstream=video_rows)
    stale_video = full_rows(graph, "video", stale_root)
    n = args.n
    with (
        tempfile.TemporaryDirectory() as tmp,
        mx.DuckDBStore(Path(tmp) / "b.duckdb", graph) as store,
    ):
        store.write("video", video_rows)
        ms, inc = timed(lambda: store.resolve_update("leaf", full=True), args.rounds)
        report(phase="new", n=n, median_ms=ms, counts=inc.counts())
        history = {}
        for i in range(1, args.rewrites + 1):
            if i > 1:
                store.write("video", video_rows)
            store.write("leaf", leaf_rows)
            if i in (1, args.rewrites):
                ms, inc = timed(lambda: store.resolve_update("leaf", full=True), args.rounds)
                history[i] = ms
                report(phase="history", rewrites=i, n=n, median_ms=ms, counts=inc.counts())
        report(phase="history_ratio", n=n, ratio=round(history[args.rewrites] / history[1], 2))
        store.write("video", stale_video)
        ms, inc = timed(lambda: store.resolve_update("leaf", full=True), args.rounds)
        report(phase="stale", n=n, rewrites=args.rewrites, median_ms=ms, counts=inc.counts())


def report(**fields) -> None:
    print(
        json.dumps({"impl": "metaxy_core", "store": "duckdb", "graph": "simple", **fields}),
        flush=True,
    )


if __name__ == "__main__":
    main()
