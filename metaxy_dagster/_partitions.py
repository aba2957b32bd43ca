"""Dynamic partitions that name change sets (batches of sample ids), not samples."""

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote

import dagster as dg
import polars as pl

import metaxy_core as mx

DEFAULT_PARTITIONS_NAME = "metaxy_batches"
# Dagster's guidance: at most ~25k partition requests per sensor tick.
MAX_PARTITION_REQUESTS = 25_000
# Samples per batch: the sensor's default, and the bound of a manual (UI) batch.
DEFAULT_BATCH_SIZE = 10_000
# The manifest kind of a partition a user added by hand (Materialize in the UI).
MANUAL_KIND = "manual"


def batch_partitions(name: str = DEFAULT_PARTITIONS_NAME) -> dg.DynamicPartitionsDefinition:
    """The dynamic partitions definition whose keys are batch keys written by the sensor.

    Args:
        name: the partitions definition's name (one per code location).

    Returns:
        The dynamic partitions definition to pass to assets, jobs and sensors.

    Example:
        >>> batch_partitions().name
        'metaxy_batches'
    """
    if not isinstance(name, str) or not name:
        raise mx.SpecError(f"batch_partitions needs a non-empty name, got {name!r}.")
    return dg.DynamicPartitionsDefinition(name=name)


def batch_key(now: datetime, index: int, ids: pl.DataFrame) -> str:
    """A sortable, collision-free batch key: tick time (microseconds), index, content digest."""
    digest = hashlib.sha256(ids.sort(ids.columns).write_csv().encode()).hexdigest()[:8]
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{index:05d}-{digest}"


def _escape(value: object) -> str:
    # Percent-encode all but letters, digits and "_-~" (dots too): no token holds the "."
    # separator, and an empty value is "%" so a key never holds Dagster's forbidden "...".
    return quote(str(value), safe="").replace(".", "%2E") or "%"


def sample_partition_key(row: dict[str, object]) -> str:
    """The partition key of one sample in `sample` mode: its escaped id values joined by `.`.

    Distinct ids give distinct keys (`("x.y", "z")` is `x%2Ey.z`, `("x", "y.z")` is
    `x.y%2Ez`), and every key is a valid Dagster partition key. Plain ids stay readable.

    Args:
        row: the sample's id values by column, in id column order.

    Returns:
        The partition key.

    Example:
        >>> sample_partition_key({"video": "v1", "clip": "a b"})
        'v1.a%20b'
    """
    return ".".join(_escape(v) for v in row.values())


def partition_ids(store: mx.MetadataStore, keys: Sequence[str]) -> pl.DataFrame | None:
    """The union of the manifests' sample ids for these partition keys, read in sorted key order.

    Returns None when `keys` is empty (an unpartitioned run).
    """
    if not keys:
        return None
    frames = [store.batch_ids(key) for key in sorted(keys)]
    return pl.concat(frames, how="vertical_relaxed").unique(maintain_order=True)


def restrict(frame: pl.DataFrame, ids: pl.DataFrame | None) -> pl.DataFrame:
    """Rows of `frame` whose ids are in `ids`; unchanged when `ids` is None or names other columns.

    A feature keyed by other columns than the batch (aggregation, expansion children) is
    not restricted: its whole increment is computed in the batch run.
    """
    if ids is None or not set(ids.columns) <= set(frame.columns):
        return frame
    return frame.join(
        ids.cast({c: frame.schema[c] for c in ids.columns}), on=ids.columns, how="semi"
    )


def _manifest_anchor(graph: mx.FeatureGraph, key: mx.FeatureKey) -> mx.FeatureKey:
    """The feature a manual manifest names: `key`, or its expansion parent (same id columns)."""
    columns = set(graph.spec(key).parent_key)
    for candidate in (key, *graph.topological_order()):
        if set(graph.spec(candidate).id_columns) == columns:
            return candidate
    return key  # unreachable for a valid graph: an expansion's parent is in the graph


def write_manual_manifests(
    store: mx.MetadataStore,
    keys: Sequence[str],
    increment: mx.Increment,
    *,
    limit: int = DEFAULT_BATCH_SIZE,
) -> list[str]:
    """Give partition keys a user added by hand a manifest: this increment's samples, bounded.

    A run of a partition the sensor did not create (Materialize with a new partition in the
    UI, `dg.materialize(partition_key=...)`) takes the first asset's current increment, at
    most `limit` samples, and records it; the run's other assets and any re-run of the
    partition then read that manifest, like a sensor batch.

    Returns:
        The keys that got a manifest now.
    """
    known = set(store.batches()["batch_key"].to_list())
    missing = [k for k in keys if k not in known]
    if not missing:
        return []
    graph = store.graph
    spec = graph.spec(increment.feature)
    key = list(spec.parent_key)
    frames = [increment.new.select(key), increment.stale.select(key)]
    if key == list(spec.id_columns):
        frames.append(increment.orphaned.select(key))
    ids = pl.concat(frames, how="vertical_relaxed").unique().sort(key).head(limit)
    anchor = _manifest_anchor(graph, increment.feature)
    for partition in missing:  # several new keys in one run share the samples
        store.write_batch(partition, anchor, ids, kind=MANUAL_KIND)
    return missing
