"""Observable source assets: what the root features read, with a content-based data version."""

import hashlib
import warnings
from collections.abc import Mapping
from typing import Any

import dagster as dg
import narwhals as nw
import polars as pl

import metaxy_core as mx
from metaxy_dagster._io_manager import SourceFn
from metaxy_dagster._metadata import source_asset_key


def samples_version(samples: pl.DataFrame) -> str:
    """A data version of source samples (ids plus input versions), independent of row order."""
    ordered = samples.select(sorted(samples.columns)).sort(sorted(samples.columns))
    return hashlib.sha256(ordered.write_csv().encode()).hexdigest()[:24]


def _source_asset(
    graph: mx.FeatureGraph, key: mx.FeatureKey, source: SourceFn, group_name: str | None
) -> dg.AssetsDefinition:
    fields = ", ".join(graph.spec(key).field_keys)
    spec = dg.AssetSpec(
        source_asset_key(key),
        description=f"Inputs of root feature {key}: one input version per field ({fields}).",
        tags={"metaxy/source_of": key.table_name},
        kinds={"metaxy"},
    )

    def _observe() -> dg.ObserveResult:
        samples = nw.from_native(source(), eager_only=True).to_polars()
        return dg.ObserveResult(
            asset_key=spec.key,
            data_version=dg.DataVersion(samples_version(samples)),
            metadata={"dagster/row_count": samples.height},
        )

    with warnings.catch_warnings():  # observable sources are marked beta in Dagster 1.13
        warnings.simplefilter("ignore", dg.BetaWarning)
        decorate = dg.multi_observable_source_asset(
            specs=[spec], name=f"{key.table_name}_source", group_name=group_name
        )
        return decorate(_observe)


def source_assets(
    graph: mx.FeatureGraph, sources: Mapping[Any, SourceFn], *, group_name: str | None = "metaxy"
) -> list[dg.AssetsDefinition]:
    """One observable source asset per root feature, upstream of the root's asset.

    Args:
        graph: the feature graph.
        sources: root feature -> function returning ids plus one input version column per field.
        group_name: the asset group.

    Raises:
        SpecError: a source is given for a feature that is not a root.

    Example:
        >>> sources = source_assets(graph, {"video": list_videos})  # doctest: +SKIP
    """
    assets = []
    for feature, source in sources.items():
        spec = graph.spec(feature)
        if not spec.is_root:
            raise mx.SpecError(
                f"Feature {spec.key} is not a root; only roots take a source function."
            )
        assets.append(_source_asset(graph, spec.key, source, group_name))
    return assets
