"""Payload assets: data kept beside the metadata, written by the user's own IO managers.

A payload asset (large arrays, images, embeddings...) depends on a feature asset, shares its
batch partitions and writes through any Dagster IO manager (e.g. `DeltaLakePolarsIOManager`
with `partition_expr`): one batch partition is one payload write. The increment sensor selects
it in every run that selects one of its features.
"""

from collections.abc import Mapping, Sequence

import dagster as dg

import metaxy_core as mx
from metaxy_dagster._metadata import feature_asset_key

# Feature -> the payload asset keys selected with it.
Companions = Mapping[mx.FeatureKey, Sequence[dg.AssetKey]]


def payload_companions(
    graph: mx.FeatureGraph,
    assets: Sequence[dg.AssetsDefinition],
    partitions: dg.PartitionsDefinition | None,
) -> dict[mx.FeatureKey, list[dg.AssetKey]]:
    """The payload assets' keys by the features they read, checked against the graph.

    Raises:
        SpecError: an entry is not an asset, is a feature asset, reads no feature of `graph`,
            or is partitioned otherwise than the feature assets.
    """
    by_asset_key = {feature_asset_key(k): k for k in graph.keys}
    want = getattr(partitions, "name", None)
    companions: dict[mx.FeatureKey, list[dg.AssetKey]] = {}
    for asset in assets:
        if not isinstance(asset, dg.AssetsDefinition):
            raise mx.SpecError(
                f"build_definitions(payload_assets=...) takes assets, got {asset!r}."
            )
        names = [k.to_user_string() for k in asset.keys]
        if any(k in by_asset_key for k in asset.keys):
            raise mx.SpecError(
                f"Payload asset {names} has a feature's asset key: a payload is an asset of "
                "its own that depends on the feature asset."
            )
        features = [by_asset_key[k] for k in asset.dependency_keys if k in by_asset_key]
        if not features:
            raise mx.SpecError(
                f"Payload asset {names} depends on no feature asset of this graph: give it "
                "deps=[mxd.feature_asset_key(feature)] or an input from the feature asset."
            )
        have = getattr(asset.partitions_def, "name", None)
        if have != want:
            raise mx.SpecError(
                f"Payload asset {names} is partitioned by {have!r}, but the feature assets by "
                f"{want!r}: one batch partition is one payload write, so give it the same "
                "partitions (mxd.batch_partitions(), or none in mode='none')."
            )
        for feature in features:
            companions.setdefault(feature, []).extend(asset.keys)
    return companions


def with_companions(
    result: dg.SensorResult | dg.SkipReason, companions: Companions
) -> dg.SensorResult | dg.SkipReason:
    """The sensor's run requests, each also selecting the payload assets of its features."""
    if not companions or not isinstance(result, dg.SensorResult) or not result.run_requests:
        return result
    by_asset_key = {feature_asset_key(k): keys for k, keys in companions.items()}
    requests = []
    for request in result.run_requests:
        selection = list(request.asset_selection or [])
        extra = [k for key in selection for k in by_asset_key.get(key, ())]
        if extra:
            selection += [k for k in dict.fromkeys(extra) if k not in selection]
            request = request.with_replaced_attrs(asset_selection=selection)
        requests.append(request)
    return result._replace(run_requests=requests)  # a NamedTuple: every other field kept
