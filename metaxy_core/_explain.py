"""Status, plan and explanations: what a store has pending, what a run would do, and why.

`status` counts each feature's pending samples; `plan` adds the samples that turn stale
downstream once their upstreams are recomputed; `why` walks a sample's causes upstream.
Roots resolved without their inputs report the samples a code bump made stale (their
inputs are not checked); pass `samples=` to resolve them fully.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import narwhals as nw

from metaxy_core import _columns as C
from metaxy_core._guard import guarded_function
from metaxy_core._keys import FeatureKey
from metaxy_core._pending import Pending, by_key, keys_of, pending
from metaxy_core._plan import Plan, PlanStep, plan
from metaxy_core._why import Cause, FieldExplanation, SampleExplanation, why
from metaxy_core.stores._base import MetadataStore

__all__ = [
    "Cause",
    "FeatureStatus",
    "FieldExplanation",
    "Plan",
    "PlanStep",
    "SampleExplanation",
    "plan",
    "status",
    "why",
]


@dataclass(frozen=True)
class FeatureStatus:
    """One feature's samples in a store and what is pending for them.

    Attributes:
        feature: the feature.
        live: samples with a live (not deleted) row.
        new, stale, orphaned: pending samples (keyed like the increment).
        stale_fields: per stale field, samples per reason (`code` or `upstream`).
        last_write: when a row of the feature was last written (None: never).
        state: `ok`, `upstream missing`, or `inputs not checked` (a root resolved
            without its inputs: only code bumps are seen).
    """

    feature: FeatureKey
    live: int
    new: int
    stale: int
    orphaned: int
    stale_fields: dict[str, dict[str, int]]
    last_write: datetime | None
    state: str

    @property
    def pending(self) -> int:
        """New, stale and orphaned samples together."""
        return self.new + self.stale + self.orphaned

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "feature": self.feature.path,
            "live": self.live,
            "new": self.new,
            "stale": self.stale,
            "orphaned": self.orphaned,
            "stale_fields": self.stale_fields,
            "last_write": None if self.last_write is None else self.last_write.isoformat(),
            "state": self.state,
        }


@guarded_function
def status(
    store: MetadataStore,
    features: Iterable[Any] | None = None,
    *,
    samples: Mapping[Any, Any] | None = None,
) -> list[FeatureStatus]:
    """Live samples and pending work of each feature, in topological order.

    Args:
        store: the store.
        features: keys, specs or classes (default: every feature of the store's graph).
        samples: root feature -> its inputs (as for `resolve_update`); roots left out
            report only the samples a code bump made stale.

    Returns:
        One `FeatureStatus` per feature.

    Raises:
        UnknownFeatureError: a feature is not in the store's graph.

    Example:
        >>> [s.to_dict()["stale"] for s in status(store, ["crop"])]  # doctest: +SKIP
        [2]
    """
    inputs = by_key(store, samples)
    return [
        _status(store, key, pending(store, key, inputs.get(key)))
        for key in keys_of(store, features)
    ]


def _status(store: MetadataStore, key: FeatureKey, work: Pending) -> FeatureStatus:
    live, last = 0, None
    latest = store.latest(key, include_deleted=True)
    if latest is not None:
        counts = latest.select(
            nw.col(C.DELETED_AT).is_null().cast(nw.Int64).sum().alias("live"),
            nw.col(C.UPDATED_AT).max().alias("last"),
        ).collect(backend="polars")
        live, last = counts.row(0)
    return FeatureStatus(
        key,
        int(live or 0),
        work.new.height,
        work.stale.height,
        work.orphaned.height,
        work.stale_fields(),
        last,
        work.state,
    )
