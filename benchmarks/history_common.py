"""What the history benchmarks (history_duckdb.py, history_delta.py) share."""

import statistics
import time
from collections.abc import Callable
from typing import Any

import polars as pl
from ours_runner import build_graph

import metaxy_core as mx


def simple_graph() -> mx.FeatureGraph:
    """The `simple` graph of data.py: video{audio, frames} -> leaf{out}."""
    return build_graph("simple")


def full_rows(
    graph: mx.FeatureGraph, feature: str, samples: pl.DataFrame | None, upstream=None
) -> pl.DataFrame:
    """Every row of a feature with its provenance (a full rewrite), computed in memory."""
    memory = mx.MemoryStore(graph)
    if upstream is not None:
        memory.write("video", upstream)
    return memory.resolve_update(feature, samples=samples).to_compute()


def timed(fn: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    """Median milliseconds of `rounds` calls, and the last result."""
    times, result = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 1), result
