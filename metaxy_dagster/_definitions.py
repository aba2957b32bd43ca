"""One call that wires a graph into a Dagster code location."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

import metaxy_core as mx
from metaxy_dagster._assets import DEFAULT_GROUP, IO_MANAGER_KEY, ComputeFn, feature_assets
from metaxy_dagster._io_manager import MetaxyIOManager, SourceFn
from metaxy_dagster._metadata import feature_asset_key
from metaxy_dagster._partitions import batch_partitions
from metaxy_dagster._payloads import payload_companions
from metaxy_dagster._resources import MetaxyStore
from metaxy_dagster._sensors import Mode, cleanup_sensor, increment_sensor
from metaxy_dagster._sources import source_assets

STORE_KEY = "metaxy_store"
JOB_NAME = "metaxy_job"
OBSERVE_JOB_NAME = "metaxy_observe_sources"


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
    assets: Sequence[dg.AssetsDefinition] = (),
    exclude: Iterable[Any] = (),
    payload_assets: Sequence[dg.AssetsDefinition] = (),
    observe_interval_minutes: int | None = 5,
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
        assets: hand-written feature assets (`feature_asset`); they join the job and the
            increment sensor exactly like generated ones.
        exclude: features this code location deliberately does not compute.
        payload_assets: assets holding data kept beside a feature's metadata (arrays,
            images), written by any IO manager: each depends on a feature asset and has the
            feature assets' partitions (one batch partition, one payload write). They join
            the job, and every run the sensor launches for a feature selects them too.
        observe_interval_minutes: observe the source assets on a schedule this often (job
            `metaxy_observe_sources`; the schedule runs when `sensors_running`); None: no
            schedule. Each observation calls the sources once.

    Raises:
        SpecError: the store's settings contradict each other (see `MetaxyStore.check_config`),
            a payload asset reads no feature or is partitioned otherwise, a feature has
            neither a compute, a hand-written asset nor an exclusion (naming them), a feature
            has two of them, an asset is not a feature asset of `graph`, a hand-written
            asset's partitions do not fit `mode`, or `observe_interval_minutes` is not a
            whole number of minutes dividing an hour or of hours dividing a day.

    Returns:
        `dg.Definitions` with resources `metaxy_store` and `metaxy_io_manager`, job
        `metaxy_job` and, with sources, the observation job and its schedule.

    Example:
        >>> defs = build_definitions(  # doctest: +SKIP
        ...     graph, {"video": video_fn}, {"video": list_videos})
    """
    _check_arguments(graph, computes, sources)
    observe_cron = None if observe_interval_minutes is None else _every(observe_interval_minutes)
    resource = store or MetaxyStore(graph=graph)
    resource.check_config()
    partitions = None if mode == "none" else batch_partitions()
    hand_written = _hand_written_features(graph, assets, partitions)
    _check_coverage(graph, computes, hand_written, exclude)
    generated = feature_assets(
        graph, computes, sources=sources, partitions_def=partitions, group_name=group_name
    )
    companions = payload_companions(graph, payload_assets, partitions)
    every_asset = [*generated, *hand_written.values(), *payload_assets]
    features = [graph.spec(f).key for f in computes] + list(hand_written)
    job = dg.define_asset_job(
        JOB_NAME,
        selection=dg.AssetSelection.assets(*every_asset),
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
            payloads=companions,
            **(sensor_options or {}),
        )
    ]
    if partitions is not None:
        sensors.append(cleanup_sensor(partitions, keep=keep_partitions, default_status=status))
    observed = source_assets(graph, sources, group_name=group_name)
    schedules = _observation_schedules(observed, observe_cron, status)
    return dg.Definitions(
        assets=[*observed, *every_asset],
        jobs=[job],
        schedules=schedules,
        sensors=sensors,
        resources={STORE_KEY: resource, IO_MANAGER_KEY: MetaxyIOManager(store=resource)},
        executor=executor,
    )


def _hand_written_features(
    graph: mx.FeatureGraph,
    assets: Sequence[dg.AssetsDefinition],
    partitions: dg.PartitionsDefinition | None,
) -> dict[mx.FeatureKey, dg.AssetsDefinition]:
    """Hand-written assets by the feature they compute (their asset key is the feature's)."""
    by_asset_key = {feature_asset_key(k): k for k in graph.keys}
    found: dict[mx.FeatureKey, dg.AssetsDefinition] = {}
    want = getattr(partitions, "name", None)
    for asset in assets:
        if not isinstance(asset, dg.AssetsDefinition):
            raise mx.SpecError(
                f"build_definitions(assets=...) takes feature assets, got {asset!r}."
            )
        keys = [by_asset_key.get(k) for k in asset.keys]
        if len(keys) != 1 or keys[0] is None:
            names = [k.to_user_string() for k in asset.keys]
            raise mx.SpecError(
                f"Asset {names} is not a feature asset of this graph (make it with "
                "mxd.feature_asset); add other assets with dg.Definitions.merge."
            )
        key = keys[0]
        if key in found:
            raise mx.SpecError(f"Two hand-written assets compute feature {key}.")
        have = getattr(asset.partitions_def, "name", None)
        if have != want:
            raise mx.SpecError(
                f"The hand-written asset of {key} is partitioned by {have!r}, but the sensor's "
                f"mode needs {want!r}: pass partitions_def="
                + ("None" if want is None else "mxd.batch_partitions()")
                + " to feature_asset."
            )
        found[key] = asset
    return found


def _check_coverage(
    graph: mx.FeatureGraph,
    computes: Mapping[Any, ComputeFn],
    hand_written: Mapping[mx.FeatureKey, dg.AssetsDefinition],
    exclude: Iterable[Any],
) -> None:
    """Every feature is computed exactly one way, or deliberately excluded."""
    computed = [graph.spec(f).key for f in computes]
    excluded = {graph.spec(f).key for f in exclude}
    twice = sorted(k.path for k in computed if k in hand_written or k in excluded)
    twice += sorted(k.path for k in hand_written if k in excluded)
    if twice:
        raise mx.SpecError(
            f"Feature(s) {twice} are given more than one of: a compute, a hand-written asset, "
            "an exclusion. Keep one."
        )
    covered = {*computed, *hand_written, *excluded}
    missing = [k.path for k in graph.keys if k not in covered]
    if missing:
        raise mx.SpecError(
            f"Feature(s) {missing} have no compute function and no hand-written asset: add "
            "them to computes=, pass their @feature_asset in assets=, or list them in "
            "exclude= if this code location does not compute them."
        )


def _check_arguments(graph: Any, computes: Any, sources: Any) -> None:
    """Arguments of the wrong shape fail here, by name, not deep inside Dagster."""
    if not isinstance(graph, mx.FeatureGraph):
        raise mx.SpecError(f"build_definitions needs a FeatureGraph, got {type(graph).__name__}.")
    for name, value in (("computes", computes), ("sources", sources)):
        if not isinstance(value, Mapping):
            raise mx.SpecError(
                f"build_definitions({name}=...) maps features to functions, "
                f"got {type(value).__name__}."
            )
        bad = [str(k) for k, fn in value.items() if not callable(fn)]
        if bad:
            raise mx.SpecError(f"build_definitions({name}=...): {bad} are not functions.")


def _observation_schedules(
    observed: Sequence[dg.AssetsDefinition], cron: str | None, status: dg.DefaultSensorStatus
) -> list[dg.ScheduleDefinition]:
    """A schedule of a job observing the sources, so the UI shows their current versions."""
    if not observed or cron is None:
        return []
    observe = dg.define_asset_job(
        OBSERVE_JOB_NAME,
        selection=dg.AssetSelection.assets(*observed),
        description="Observes the root features' sources (their data versions in the UI).",
    )
    return [
        dg.ScheduleDefinition(
            name=f"{OBSERVE_JOB_NAME}_schedule",
            job=observe,
            cron_schedule=cron,
            default_status=dg.DefaultScheduleStatus(status.value),
        )
    ]


def _every(minutes: Any) -> str:
    """A cron schedule running every `minutes` minutes, on the clock (`*/5 * * * *`)."""
    if isinstance(minutes, int) and not isinstance(minutes, bool):
        if 1 <= minutes < 60 and 60 % minutes == 0:
            return f"*/{minutes} * * * *"
        if minutes % 60 == 0 and 24 % (minutes // 60) == 0:
            return f"0 */{minutes // 60} * * *"
    raise mx.SpecError(
        f"observe_interval_minutes={minutes!r}: use a number of minutes dividing an hour "
        "(1, 2, 3, 5, 10, 15, 20, 30) or of hours dividing a day (60, 120, 180, 240, 360, ...), "
        "or None for no observation schedule."
    )
