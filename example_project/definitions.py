"""The Dagster code location: `dagster dev -w workspace.yaml` (or `make dev`) loads `defs`.

One asset per feature, an observable source for the images (observed every 5 minutes), checks,
an increment sensor that is on from the start (so batches appear without clicks) and a DuckDB
store under `$METAXY_DATA_DIR` (default `./.metaxy_data`).
"""

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


def build_defs(
    graph: mx.FeatureGraph | None = None, *, directory: Path | None = None
) -> dg.Definitions:
    """The example's definitions over `graph` (default: the example graph) and a data folder.

    Args:
        graph: the feature graph (the demo passes one with a bumped code version).
        directory: where the DuckDB file and the edits file live (default: `data_dir()`).

    Example:
        >>> defs = build_defs()
        >>> defs.resolve_asset_graph().get_all_asset_keys()  # doctest: +SKIP
    """
    graph = graph or feature_graph()
    directory = directory or digits.data_dir()  # the store creates it on first open
    return mxd.build_definitions(
        graph,
        {key.path: _dagster_compute(key.path, directory) for key in graph.keys},
        sources={"image": image_source(directory)},
        store=mxd.MetaxyStore(graph=graph, duckdb_path=str(directory / DUCKDB_FILE)),
        sensor_options={"minimum_interval_seconds": SENSOR_INTERVAL_SECONDS},
        sensors_running=True,
    )


defs = build_defs()
