"""What one feature has pending in a store: the increment, or for a root its code staleness.

A root's expected provenance needs its inputs (a content hash per field), which only the
caller knows. Without them, the stored code versions still tell which root samples a
code bump made stale; `status`, `plan` and `why` use that, and say so.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._increments import IncrementStatus, StaleReason
from metaxy_core._keys import FeatureKey
from metaxy_core._spec import FeatureSpec
from metaxy_core.stores._base import MetadataStore

# States a feature's pending work can be in, besides "ok".
UPSTREAM_MISSING = "upstream missing"
INPUTS_NOT_CHECKED = "inputs not checked"


@dataclass(frozen=True)
class Pending:
    """New, stale and orphaned samples of one feature (frames keyed like its increment)."""

    feature: FeatureKey
    new: pl.DataFrame
    stale: pl.DataFrame  # + STALE_FIELDS / STALE_REASONS lists
    orphaned: pl.DataFrame
    state: str = "ok"

    def stale_fields(self) -> dict[str, dict[str, int]]:
        """Per stale field: samples per reason."""
        if self.stale.is_empty():
            return {}
        pairs = self.stale.select(
            pl.col(C.STALE_FIELDS).alias("field"), pl.col(C.STALE_REASONS).alias("reason")
        ).explode("field", "reason")
        out: dict[str, dict[str, int]] = {}
        for row in pairs.group_by("field", "reason").len().sort("field", "reason").iter_rows():
            out.setdefault(row[0], {})[row[1]] = row[2]
        return out


def pending(store: MetadataStore, feature: Any, samples: Any = None) -> Pending:
    """The pending work of `feature` (a root without `samples`: its code staleness only)."""
    spec = store.graph.spec(feature)
    if spec.is_root and samples is None:
        return _root_code_staleness(store, spec)
    increment = store.resolve_update(spec.key, samples=samples)
    state = "ok" if increment.status is IncrementStatus.OK else UPSTREAM_MISSING
    keys = list(spec.parent_key)
    stale = increment.stale.select(*keys, C.STALE_FIELDS, C.STALE_REASONS)
    return Pending(spec.key, increment.new.select(keys), stale, increment.orphaned, state)


def _root_code_staleness(store: MetadataStore, spec: FeatureSpec) -> Pending:
    """Root samples whose stored code version of some field is not the current one."""
    ids = list(spec.id_columns)
    empty_ids = store.graph.definition(spec.key).columns
    none = pl.DataFrame(schema={c: empty_ids[c] for c in ids})
    latest = store.latest(spec.key)
    if latest is None:
        stale = none.with_columns(
            pl.lit(None, pl.List(pl.String)).alias(C.STALE_FIELDS),
            pl.lit(None, pl.List(pl.String)).alias(C.STALE_REASONS),
        )
        return Pending(spec.key, none, stale, none, INPUTS_NOT_CHECKED)
    present = set(latest.columns)
    stored = {
        f: nw.col(C.code_version_column(f))
        if C.code_version_column(f) in present
        else nw.lit(None, nw.String)
        for f in spec.field_keys
    }
    moved = {
        f: (expr.is_null() | (expr != nw.lit(spec.field(f).code_version))).alias(f)
        for f, expr in stored.items()
    }
    flags = latest.select(*ids, *moved.values()).collect(backend="polars").to_native()
    fields = pl.concat_list(
        [pl.when(pl.col(f)).then(pl.lit(f)) for f in spec.field_keys]
    ).list.drop_nulls()
    stale = (
        flags.with_columns(fields.alias(C.STALE_FIELDS))
        .filter(pl.col(C.STALE_FIELDS).list.len() > 0)
        .with_columns(
            pl.col(C.STALE_FIELDS).list.eval(pl.lit(StaleReason.CODE.value)).alias(C.STALE_REASONS)
        )
        .select(*ids, C.STALE_FIELDS, C.STALE_REASONS)
    )
    return Pending(spec.key, none, stale, none, INPUTS_NOT_CHECKED)


def keys_of(store: MetadataStore, features: Iterable[Any] | None) -> list[FeatureKey]:
    """The keys of `features` (all by default), in topological order."""
    if features is None:
        return list(store.graph.keys)
    chosen = {
        store.graph.spec(f).key for f in ([features] if isinstance(features, str) else features)
    }
    return [k for k in store.graph.keys if k in chosen]


def by_key(store: MetadataStore, samples: Mapping[Any, Any] | None) -> dict[FeatureKey, Any]:
    """Root inputs keyed by feature key (callers may name features any way)."""
    return {store.graph.spec(f).key: v for f, v in (samples or {}).items()}
