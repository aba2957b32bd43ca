"""Small public helpers for tests of pipelines built on metaxy_core."""

from typing import Any

import polars as pl

from metaxy_core._increments import Increment
from metaxy_core.stores._base import MetadataStore


def compute_increment(
    store: MetadataStore, feature: Any, values: dict[str, Any], *, samples: Any = None
) -> Increment:
    """Resolve `feature`, fill the user columns with constant `values`, write; return the increment.

    Example:
        >>> inc = compute_increment(store, Crop, {"crop_path": "x"})  # doctest: +SKIP
    """
    increment = store.resolve_update(feature, samples=samples)
    rows = increment.to_compute()
    if rows.height:
        store.write(feature, rows.with_columns(pl.lit(v).alias(k) for k, v in values.items()))
    if increment.orphaned.height:
        store.delete(feature, increment.orphaned)
    return increment
