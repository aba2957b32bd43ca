"""DeltaStore resolve times on the `simple` graph, and how they hold up as history grows.

Run in the project venv (data from benchmarks/data.py, generated if missing):
    .venv/bin/python benchmarks/history_delta.py [--n 1000000] [--rewrites 10] [--rounds 3]

Prints JSON lines:
  phase new:      root written, leaf empty -> resolve_update(leaf) = N new
  phase history:  after 1 and after R full rewrites of root and leaf, resolve_update(leaf)
                  (nothing to do, but the whole join, hash and diff still runs) on the
                  store as writes leave it (log + current-rows checkpoint), then, with
                  --compact, after `compact()`; history_ratio compares the R-rewrite time
                  with the 1-rewrite time (issue 11: within 1.3x without compact())
  phase stale:    (with --compact) then the root rewritten in full, 10% of audio
                  changed -> N/10 stale
Only resolve_update(leaf, full=True) (the full diff: every sample read and compared, the
watermark ignored) and compact are timed; writes are setup. Fresh Delta directory per run.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from data import DEFAULT_DATA_DIR, load_roots
from history_common import full_rows, simple_graph, timed

import metaxy_core as mx


def rewrite(store: mx.DeltaStore, video_rows: pl.DataFrame, leaf_rows: pl.DataFrame) -> None:
    store.write("video", video_rows)
    store.write("leaf", leaf_rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--rewrites", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--compact", action="store_true", help="then compact() and time again")
    args = p.parse_args()
    roots, stale_root = load_roots(args.data_dir, "simple", args.n)
    graph = simple_graph()
    video_rows = full_rows(graph, "video", roots["video"])
    leaf_rows = full_rows(graph, "leaf", None, upstream=video_rows)
    stale_video = full_rows(graph, "video", stale_root)
    n, rounds = args.n, args.rounds
    with tempfile.TemporaryDirectory() as tmp, mx.DeltaStore(Path(tmp) / "delta", graph) as store:
        store.write("video", video_rows)
        ms, inc = timed(lambda: store.resolve_update("leaf", full=True), rounds)
        report(phase="new", n=n, median_ms=ms, counts=inc.counts())
        store.write("leaf", leaf_rows)
        first, inc = timed(lambda: store.resolve_update("leaf", full=True), rounds)
        report(phase="history", rewrites=1, n=n, median_ms=first, counts=inc.counts())
        for _ in range(args.rewrites - 1):
            rewrite(store, video_rows, leaf_rows)
        raw, inc = timed(lambda: store.resolve_update("leaf", full=True), rounds)
        report(
            phase="history",
            rewrites=args.rewrites,
            compacted=False,
            n=n,
            median_ms=raw,
            ratio=round(raw / first, 2),
            counts=inc.counts(),
        )
        if not args.compact:
            report(phase="history_ratio", n=n, raw=round(raw / first, 2))
            return
        start = time.perf_counter()
        removed = store.compact()
        compact_ms = round((time.perf_counter() - start) * 1000, 1)
        report(phase="compact", n=n, ms=compact_ms, removed=removed)
        compacted, inc = timed(lambda: store.resolve_update("leaf", full=True), rounds)
        report(
            phase="history",
            rewrites=args.rewrites,
            compacted=True,
            n=n,
            median_ms=compacted,
            ratio=round(compacted / first, 2),
            counts=inc.counts(),
        )
        report(
            phase="history_ratio",
            n=n,
            raw=round(raw / first, 2),
            compacted=round(compacted / first, 2),
        )
        store.write("video", stale_video)
        ms, inc = timed(lambda: store.resolve_update("leaf", full=True), rounds)
        report(phase="stale", n=n, rewrites=args.rewrites, median_ms=ms, counts=inc.counts())


def report(**fields) -> None:
    print(
        json.dumps({"impl": "metaxy_core", "store": "delta", "graph": "simple", **fields}),
        flush=True,
    )


if __name__ == "__main__":
    main()
