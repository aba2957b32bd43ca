"""The Dagster code location: `dagster dev -w workspace.yaml` (or `make dev`) loads `defs`.

One asset per feature, an observable source for the images (observed every 5 minutes), checks,
an increment sensor that is on from the start (so batches appear without clicks) and a store
under `$METAXY_DATA_DIR` (default `./.metaxy_data`): a DuckDB file, or with `METAXY_STORE=delta`
a Delta store whose batch runs execute in parallel (`make dev METAXY_STORE=delta`).
"""

import os
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

import metaxy_core as mx
import metaxy_dagster as mxd
from example_project import digits
from example_project.features import feature_graph
from example_project.pipeline import COMPUTE, compute_image

DUCKDB_FILE = "metaxy.duckdb"
DELTA_DIR = "delta"
STORE_ENV = "METAXY_STORE"
# Delta admits concurrent writers: batch runs in parallel, each run's steps in forked processes
# (the fork server imports the code location once, not every step).
PARALLEL_EXECUTOR = dg.multiprocess_executor.configured(
    {"max_concurrent": 2, "start_method": {"forkserver": {"preload_modules": [__name__]}}}
)
SENSOR_INTERVAL_SECONDS = 15


def current_images(directory: Path | None = None) -> pl.DataFrame:
    """The images as they are now: the bundled digits, with the edits file applied."""
    return digits.load_images(inverted=digits.inverted_ids(directory))


def image_source(directory: Path | None = None) -> Any:
    """The root's source function: image ids plus a content hash per field (pixels, label)."""
    return lambda: digits.input_versions(current_images(directory))


def _dagster_compute(feature: str, directory: Path | None) -> Any:
    """Adapt a plain compute function to metaxy_dagster's `compute(context, increment)`."""
    if feature == "image":
        return lambda context, increment: compute_image(
            increment.to_compute(), current_images(directory)
        )
    compute = COMPUTE[feature]
    return lambda context, increment: compute(increment)


def store_and_executor(
    graph: mx.FeatureGraph, directory: Path, kind: str | None = None
) -> tuple[mxd.MetaxyStore, dg.ExecutorDefinition]:
    """The store resource and run executor for `kind` (default: `$METAXY_STORE`, else duckdb).

    Example:
        >>> store, _ = store_and_executor(feature_graph(), Path("/tmp/x"), "delta")
        >>> store.delta_uri
        '/tmp/x/delta'
    """
    kind = kind or os.environ.get(STORE_ENV) or "duckdb"
    if kind == "duckdb":  # one writing process: runs one at a time, steps in the run's process
        store = mxd.MetaxyStore(graph=graph, duckdb_path=str(directory / DUCKDB_FILE))
        return store, dg.in_process_executor
    if kind == "delta":
        return mxd.MetaxyStore(graph=graph, delta_uri=str(directory / DELTA_DIR)), PARALLEL_EXECUTOR
    raise mx.SpecError(f"{STORE_ENV}={kind!r} is not a store of the example: use duckdb or delta.")


def build_defs(
    graph: mx.FeatureGraph | None = None,
    *,
    directory: Path | None = None,
    store: str | None = None,
) -> dg.Definitions:
    """The example's definitions over `graph` (default: the example graph) and a data folder.

    Args:
        graph: the feature graph (the demo passes one with a bumped code version).
        directory: where the store and the edits file live (default: `data_dir()`).
        store: `duckdb` or `delta` (default: `$METAXY_STORE`, else duckdb).

    Example:
        >>> defs = build_defs()
        >>> defs.resolve_asset_graph().get_all_asset_keys()  # doctest: +SKIP
    """
    graph = graph or feature_graph()
    directory = directory or digits.data_dir()  # the store creates it on first open
    resource, executor = store_and_executor(graph, directory, store)
    return mxd.build_definitions(
        graph,
        {key.path: _dagster_compute(key.path, directory) for key in graph.keys},
        sources={"image": image_source(directory)},
        store=resource,
        sensor_options={"minimum_interval_seconds": SENSOR_INTERVAL_SECONDS},
        sensors_running=True,
        executor=executor,
    )


defs = build_defs()
