"""The asset factory: one Dagster asset per feature, enriched from the feature graph."""

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
import polars as pl

import metaxy_core as mx
from metaxy_dagster._checks import check_results, check_specs
from metaxy_dagster._io_manager import MetaxyIOManager, SourceFn, run_partition_keys
from metaxy_dagster._metadata import (
    definition_metadata,
    feature_asset_key,
    feature_tags,
    source_asset_key,
)
from metaxy_dagster._partitions import batch_partitions, partition_ids
from metaxy_dagster._retries import record_failure

ComputeFn = Callable[[dg.AssetExecutionContext, mx.Increment], Any]
DEFAULT_GROUP = "metaxy"
DEFAULT_KINDS = ("metaxy", "polars")
IO_MANAGER_KEY = "metaxy_io_manager"
BATCH_PARTITIONS = batch_partitions()
# What an asset hands the IO manager when its compute is not called (nothing to compute).
_NOTHING = pl.DataFrame()


def _asset_kwargs(
    graph: mx.FeatureGraph,
    feature: Any,
    *,
    group_name: str | None,
    kinds: Iterable[str],
    partitions_def: dg.PartitionsDefinition | None,
    io_manager_key: str,
    with_source: bool,
) -> dict[str, Any]:
    """What every feature asset gets: key, deps, group, kinds, tags, versions, metadata."""
    spec = graph.spec(feature)
    deps = [feature_asset_key(d.feature) for d in spec.deps]
    if spec.is_root and with_source:
        deps.append(source_asset_key(spec.key))
    fields = ", ".join(spec.field_keys)
    return {
        "key": feature_asset_key(spec.key),
        "deps": deps,
        "group_name": group_name,
        "kinds": set(kinds),
        "tags": feature_tags(spec),
        "description": spec.description or f"metaxy feature {spec.key} (fields: {fields})",
        "code_version": mx.feature_code_version(graph, spec.key),
        "metadata": definition_metadata(graph, spec.key),
        "partitions_def": partitions_def,
        "io_manager_key": io_manager_key,
    }


def feature_asset(
    graph: mx.FeatureGraph,
    feature: Any,
    *,
    source: SourceFn | None = None,
    group_name: str | None = DEFAULT_GROUP,
    kinds: Iterable[str] = DEFAULT_KINDS,
    partitions_def: dg.PartitionsDefinition | None = BATCH_PARTITIONS,
    io_manager_key: str = IO_MANAGER_KEY,
    deps: Sequence[Any] = (),
    **asset_kwargs: Any,
) -> Callable[[ComputeFn], dg.AssetsDefinition]:
    """Make a hand-written compute body the feature's asset, exactly like a generated one.

    The body is called as `body(context, increment)` with the feature's `mx.Increment`
    for this run (only the samples that need work, restricted to the run's batch) and
    returns a dataframe of rows for some of `increment.to_compute()`'s samples with the
    user columns filled in (an empty frame writes nothing). It is not called when there
    is nothing to compute. The IO manager refuses rows outside the increment, writes the
    rest, soft-deletes orphans and runs the feature's checks. Pass the asset to
    `build_definitions(..., assets=[...])` so that its job and increment sensor select it.

    Args:
        graph: the feature graph.
        feature: the feature key, spec or class.
        source: for a root feature, returns its ids plus one input version column per field.
        group_name: the asset group, as for `dg.asset`.
        kinds: the kinds shown on the asset, as for `dg.asset`.
        partitions_def: the batch partitions (default, for the `batch` and `sample` sensor
            modes); None for the `none` mode.
        io_manager_key: the IO manager resource key, as for `dg.asset`.
        deps: extra upstream assets besides the feature's deps.
        **asset_kwargs: any other `dg.asset` argument (op_tags, retry_policy, pool, ...).

    Returns:
        A decorator turning the body into a `dg.AssetsDefinition`.

    Example:
        >>> @feature_asset(graph, "crop")  # doctest: +SKIP
        ... def crop(context: dg.AssetExecutionContext, increment: mx.Increment) -> pl.DataFrame:
        ...     rows = increment.to_compute()
        ...     return rows.with_columns(crop_path=pl.col("sample_id") + ".png")
    """
    if not isinstance(graph, mx.FeatureGraph):
        raise mx.SpecError(f"feature_asset needs a FeatureGraph, got {type(graph).__name__}.")
    key = graph.spec(feature).key
    taken = sorted({"key", "name", "key_prefix"} & set(asset_kwargs))
    if taken:
        raise mx.SpecError(f"feature_asset({key}): the asset key is the feature's; drop {taken}.")
    if graph.spec(key).is_root and source is None:
        raise mx.SpecError(f"Root feature {key} needs source= (its ids and input versions).")
    kwargs = _asset_kwargs(
        graph,
        key,
        group_name=group_name,
        kinds=kinds,
        partitions_def=partitions_def,
        io_manager_key=io_manager_key,
        with_source=source is not None,
    )
    kwargs["deps"] = [*kwargs["deps"], *deps]
    kwargs["tags"] = {**kwargs["tags"], **asset_kwargs.pop("tags", {})}
    kwargs["metadata"] = {**kwargs["metadata"], **asset_kwargs.pop("metadata", {})}
    kwargs.update(asset_kwargs)

    def decorate(body: ComputeFn) -> dg.AssetsDefinition:
        if not callable(body):
            raise mx.SpecError(f"feature_asset({key}) decorates a function, got {body!r}.")
        return _feature_asset(graph, key, body, source, dict(kwargs))

    return decorate


def _feature_asset(
    graph: mx.FeatureGraph,
    key: mx.FeatureKey,
    compute: ComputeFn,
    source: SourceFn | None,
    kwargs: dict[str, Any],
) -> dg.AssetsDefinition:
    io_manager_key = kwargs["io_manager_key"]
    required = {io_manager_key, *kwargs.pop("required_resource_keys", ())}

    @dg.asset(**kwargs, check_specs=check_specs(key), required_resource_keys=required)
    def _asset(context: dg.AssetExecutionContext) -> Iterator[Any]:
        io: MetaxyIOManager = getattr(context.resources, io_manager_key)
        run_source = _called_once(source)  # the increment and the checks see one listing
        increment = io.load_increment(context, key, source=run_source)
        context.log.info(increment.describe())
        batch = ",".join(run_partition_keys(context)) or None
        try:
            rows = compute(context, increment) if increment.to_compute().height else _NOTHING
            result = io.output(increment, rows, batch_key=batch)
        except Exception as exc:
            # Every sample of the increment counts a failed attempt: for what the compute
            # raised, or for rows the store refuses (they would be refused again). A store
            # failure (a lock, I/O) is not the samples' doing and does not count.
            if not isinstance(exc, mx.StoreError):
                record_failure(io.store.open(), increment, exc, batch)
            raise
        yield result
        store = io.store.open()
        ids = partition_ids(store, run_partition_keys(context))
        selected = context.selected_asset_check_keys
        for result in check_results(store, key, ids, run_source):
            if dg.AssetCheckKey(feature_asset_key(key), result.check_name or "") in selected:
                yield result

    return _asset


def _called_once(source: SourceFn | None) -> SourceFn | None:
    """`source`, listing the samples at its first call only (a root run lists them once)."""
    if source is None:
        return None
    listed: list[Any] = []

    def once() -> Any:
        if not listed:
            listed.append(source())
        return listed[0]

    return once


def feature_assets(
    graph: mx.FeatureGraph,
    computes: Mapping[Any, ComputeFn],
    *,
    sources: Mapping[Any, SourceFn] | None = None,
    partitions_def: dg.PartitionsDefinition | None = None,
    group_name: str | None = DEFAULT_GROUP,
    kinds: Iterable[str] = DEFAULT_KINDS,
    io_manager_key: str = IO_MANAGER_KEY,
) -> list[dg.AssetsDefinition]:
    """One asset per feature in `computes`, in topological order, each computing only its increment.

    A compute function is called as `compute(context, increment)` and returns rows for
    some of `increment.to_compute()`'s samples (with the user columns filled in); it is
    not called when there is nothing to compute. Orphaned samples are soft-deleted.

    Args:
        graph: the feature graph.
        computes: feature (key, spec or class) -> compute function.
        sources: root feature -> function returning the root's ids plus one input version
            column per field (a content hash, mtime or etag).
        partitions_def: the batch partitions (see `batch_partitions`); None for unpartitioned.
        group_name: the asset group, as for `dg.asset`.
        kinds: the kinds shown on each asset, as for `dg.asset`.
        io_manager_key: the IO manager resource key, as for `dg.asset`.

    Raises:
        MetaxyError: a compute function names an unknown feature, or a root has no source.

    Example:
        >>> assets = feature_assets(  # doctest: +SKIP
        ...     graph, {"video": video_fn}, sources={"video": list_videos})
    """
    if not isinstance(graph, mx.FeatureGraph) or not isinstance(computes, Mapping):
        raise mx.SpecError("feature_assets needs a FeatureGraph and a mapping of computes.")
    by_key = {graph.spec(f).key: fn for f, fn in computes.items()}
    source_by_key = {graph.spec(f).key: fn for f, fn in (sources or {}).items()}
    missing = [k.path for k in by_key if graph.spec(k).is_root and k not in source_by_key]
    if missing:
        raise mx.SpecError(f"Root feature(s) {missing} need a source function in sources=.")
    assets = []
    for key in graph.topological_order():
        if key not in by_key:
            continue
        kwargs = _asset_kwargs(
            graph,
            key,
            group_name=group_name,
            kinds=kinds,
            partitions_def=partitions_def,
            io_manager_key=io_manager_key,
            with_source=key in source_by_key,
        )
        assets.append(_feature_asset(graph, key, by_key[key], source_by_key.get(key), kwargs))
    return assets
