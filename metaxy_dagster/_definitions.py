"""One call that wires a graph into a Dagster code location."""

from collections.abc import Mapping
from typing import Any

import dagster as dg

import metaxy_core as mx
from metaxy_dagster._assets import DEFAULT_GROUP, IO_MANAGER_KEY, ComputeFn, feature_assets
from metaxy_dagster._io_manager import MetaxyIOManager, SourceFn
from metaxy_dagster._partitions import batch_partitions
from metaxy_dagster._resources import MetaxyStore
from metaxy_dagster._sensors import Mode, cleanup_sensor, increment_sensor
from metaxy_dagster._sources import source_assets

STORE_KEY = "metaxy_store"
JOB_NAME = "metaxy_job"


def build_definitions(
    graph: mx.FeatureGraph,
    computes: Mapping[Any, ComputeFn],
    sources: Mapping[Any, SourceFn],
    *,
    store: MetaxyStore | None = None,
    mode: Mode = "batch",
    group_name: str = DEFAULT_GROUP,
    sensor_options: Mapping[str, Any] | None = None,
    keep_partitions: int = 100,
    sensors_running: bool = False,
    executor: dg.ExecutorDefinition | None = dg.in_process_executor,
) -> dg.Definitions:
    """Assets, source assets, checks, both sensors, a job and resources for a feature graph.

    Args:
        graph: the feature graph.
        computes: feature -> `compute(context, increment)` returning rows for the increment's
            samples with the user columns filled in (see `feature_assets`).
        sources: root feature -> zero-argument function returning the root's id columns plus
            one input version column per field (a content hash, mtime or etag).
        store: the store resource (default: `MetaxyStore(graph=graph)`, a `metaxy.duckdb` file).
        mode: the increment sensor's mode: `batch` (default), `none` (unpartitioned) or `sample`.
        group_name: the asset group of features and sources.
        sensor_options: extra `increment_sensor` arguments (max_batch_size, max_batches_per_tick,
            max_open_batches, max_sample_partitions, minimum_interval_seconds, name).
        keep_partitions: how many finished batch partitions the cleanup sensor keeps.
        sensors_running: start both sensors when the code location loads.
        executor: how runs execute their steps. In one process by default: an embedded
            DuckDB file admits one writing process, and per-step processes would queue on
            its lock. Pass None for Dagster's default (a process per step), e.g. with Delta.

    Returns:
        `dg.Definitions` with resources `metaxy_store` and `metaxy_io_manager` and job `metaxy_job`.

    Example:
        >>> defs = build_definitions(  # doctest: +SKIP
        ...     graph, {"video": video_fn}, {"video": list_videos})
    """
    resource = store or MetaxyStore(graph=graph)
    partitions = None if mode == "none" else batch_partitions()
    assets = feature_assets(
        graph, computes, sources=sources, partitions_def=partitions, group_name=group_name
    )
    features = [graph.spec(f).key for f in computes]
    job = dg.define_asset_job(
        JOB_NAME,
        selection=dg.AssetSelection.assets(*assets),
        description="Computes the increments of the metaxy features (launched by the sensor).",
    )
    status = dg.DefaultSensorStatus.RUNNING if sensors_running else dg.DefaultSensorStatus.STOPPED
    sensors = [
        increment_sensor(
            graph,
            job=job,
            sources=sources,
            features=features,
            mode=mode,
            partitions_def=partitions,
            default_status=status,
            **(sensor_options or {}),
        )
    ]
    if partitions is not None:
        sensors.append(cleanup_sensor(partitions, keep=keep_partitions, default_status=status))
    return dg.Definitions(
        assets=[*source_assets(graph, sources, group_name=group_name), *assets],
        jobs=[job],
        sensors=sensors,
        resources={STORE_KEY: resource, IO_MANAGER_KEY: MetaxyIOManager(store=resource)},
        executor=executor,
    )
