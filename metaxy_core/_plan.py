"""The plan: what a run would recompute now, and the downstream samples that would follow."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from metaxy_core import _columns as C
from metaxy_core._guard import guarded_function
from metaxy_core._keys import FeatureKey
from metaxy_core._pending import Pending, by_key, keys_of, pending
from metaxy_core._spec import FeatureDep
from metaxy_core.stores._base import MetadataStore

_FIELDS = "__mx_fields__"
_KIND = "__mx_kind__"


@dataclass(frozen=True)
class PlanStep:
    """What a feature would compute if every pending sample ran now.

    Attributes:
        feature: the feature.
        new, stale, orphaned: pending now.
        projected_new, projected_stale: samples that turn new or stale once their
            upstreams are recomputed (a content-hash data version may stop some).
        fields: per field, samples that would be recomputed in it (pending and projected).
        state: as for `FeatureStatus`.
    """

    feature: FeatureKey
    new: int
    stale: int
    orphaned: int
    projected_new: int
    projected_stale: int
    fields: dict[str, int]
    state: str

    @property
    def to_compute(self) -> int:
        """Samples a run would compute: pending and projected."""
        return self.new + self.stale + self.projected_new + self.projected_stale

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "feature": self.feature.path,
            "new": self.new,
            "stale": self.stale,
            "orphaned": self.orphaned,
            "projected_new": self.projected_new,
            "projected_stale": self.projected_stale,
            "to_compute": self.to_compute,
            "fields": self.fields,
            "state": self.state,
        }


@dataclass(frozen=True)
class Plan:
    """A dry run of everything pending, feature by feature in topological order.

    Attributes:
        steps: one `PlanStep` per feature.
    """

    steps: tuple[PlanStep, ...] = field(default=())

    @property
    def is_empty(self) -> bool:
        """True when nothing would be computed or deleted."""
        return not any(s.to_compute or s.orphaned for s in self.steps)

    def describe(self) -> str:
        """One line per feature with work."""
        lines = [
            f"{s.feature}: {s.to_compute} to compute ({s.new} new, {s.stale} stale, "
            f"+{s.projected_new + s.projected_stale} once upstream is recomputed), "
            f"{s.orphaned} orphaned"
            for s in self.steps
            if s.to_compute or s.orphaned
        ]
        return "\n".join(lines) or "nothing to do"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"steps": [s.to_dict() for s in self.steps], "empty": self.is_empty}


@guarded_function
def plan(
    store: MetadataStore,
    features: Iterable[Any] | None = None,
    *,
    samples: Mapping[Any, Any] | None = None,
) -> Plan:
    """What would be recomputed if everything pending ran now, with its downstream impact.

    A feature's projected samples are those whose upstream samples would be recomputed
    (new or stale) in a field it reads: identity edges map ids, expansion edges reach
    the children of a stored parent, aggregation edges the group of a stored member.
    Projections assume recomputed data changes; a content-hash data version can stop
    them. New children of an expansion are counted once their parent is computed.

    Args:
        store: the store.
        features: keys, specs or classes to report (default: all); the projection always
            starts from every feature upstream of them.
        samples: root feature -> its inputs (as for `resolve_update`).

    Returns:
        A `Plan`.

    Raises:
        UnknownFeatureError: a feature is not in the store's graph.

    Example:
        >>> print(plan(store).describe())  # doctest: +SKIP
        crop: 2 to compute (0 new, 2 stale, +0 once upstream is recomputed), 0 orphaned
    """
    shown = set(keys_of(store, features))
    inputs = by_key(store, samples)
    affected: dict[FeatureKey, pl.DataFrame] = {}
    steps: list[PlanStep] = []
    for key in store.graph.keys:
        work = pending(store, key, inputs.get(key))
        step, affected[key] = _plan_step(store, key, work, affected)
        if key in shown:
            steps.append(step)
    return Plan(tuple(steps))


def _plan_step(
    store: MetadataStore,
    key: FeatureKey,
    work: Pending,
    affected: Mapping[FeatureKey, pl.DataFrame],
) -> tuple[PlanStep, pl.DataFrame]:
    """The step of one feature, and its samples that change (by id, with their fields)."""
    spec = store.graph.spec(key)
    parent = list(spec.parent_key)
    every = pl.lit(list(spec.field_keys), pl.List(pl.String))
    direct = pl.concat(
        [
            work.new.select(*parent, every.alias(_FIELDS), pl.lit("new").alias(_KIND)),
            work.stale.select(
                *parent, pl.col(C.STALE_FIELDS).alias(_FIELDS), pl.lit("stale").alias(_KIND)
            ),
        ],
        how="vertical_relaxed",
    )
    projected = [_projected(store, key, dep, affected[dep.feature]) for dep in spec.deps]
    projected = [p for p in projected if p is not None and p.height]
    if projected:
        extra = pl.concat(projected, how="vertical_relaxed")
        extra = extra.join(direct.select(parent), on=parent, how="anti")
        stored = _stored_keys(store, key, extra.select(parent).unique())
        extra = extra.join(stored.with_columns(pl.lit(True).alias("__mx_s")), on=parent, how="left")
        extra = extra.with_columns(
            pl.when(pl.col("__mx_s"))
            .then(pl.lit("projected_stale"))
            .otherwise(pl.lit("projected_new"))
            .alias(_KIND)
        ).drop("__mx_s")
        merged = pl.concat([direct, extra], how="vertical_relaxed")
    else:
        merged = direct
    merged = merged.group_by(parent).agg(
        pl.col(_FIELDS).list.explode(keep_nulls=False, empty_as_null=False).unique().sort(),
        pl.col(_KIND).first(),
    )
    kinds = dict(merged.group_by(_KIND).len().iter_rows())
    per_field = dict(
        merged.select(pl.col(_FIELDS).explode())
        .drop_nulls()
        .group_by(_FIELDS)
        .len()
        .sort(_FIELDS)
        .iter_rows()
    )
    step = PlanStep(
        key,
        work.new.height,
        work.stale.height,
        work.orphaned.height,
        kinds.get("projected_new", 0),
        kinds.get("projected_stale", 0),
        {f: per_field.get(f, 0) for f in spec.field_keys if per_field.get(f)},
        work.state,
    )
    return step, _by_ids(store, key, merged)


def _projected(
    store: MetadataStore, key: FeatureKey, dep: FeatureDep, upstream: pl.DataFrame
) -> pl.DataFrame | None:
    """Keys of `key` whose fields read the changing upstream samples, with those fields."""
    if upstream.is_empty():
        return None
    spec = store.graph.spec(key)
    parent = list(spec.parent_key)
    reads = {
        f: [g for (u, g) in store.graph.field_parents(key, f) if u == dep.feature]
        for f in spec.field_keys
    }
    reads = {f: gs for f, gs in reads.items() if gs}
    if not reads:
        return None
    up_ids = list(store.graph.spec(dep.feature).id_columns)
    rename = dep.rename_map
    if dep.lineage.kind == "aggregation":
        stored = store.latest(dep.feature)
        if stored is None:
            return None
        members = upstream.select(*up_ids, _FIELDS)
        before = [
            c for c in store.graph.definition(dep.feature).columns if rename.get(c, c) in parent
        ]
        groups = (
            stored.select(*{*up_ids, *before})
            .join(store.engine.lazy(members.select(up_ids)), on=up_ids, how="semi")
            .collect(backend="polars")
            .to_native()
            .join(members, on=up_ids, how="inner")
        )
        mapped = groups.rename({c: rename[c] for c in before if c in rename}).select(
            *parent, _FIELDS
        )
    else:
        mapped = upstream.rename({c: rename[c] for c in up_ids if c in rename}).select(
            *parent, _FIELDS
        )
    touched = pl.concat_list(
        [
            pl.when(
                pl.col(_FIELDS).list.set_intersection(pl.lit(gs, pl.List(pl.String))).list.len() > 0
            ).then(pl.lit(f))
            for f, gs in reads.items()
        ]
    ).list.drop_nulls()
    out = mapped.with_columns(touched.alias(_FIELDS)).filter(pl.col(_FIELDS).list.len() > 0)
    return out.group_by(parent).agg(
        pl.col(_FIELDS).list.explode(keep_nulls=False, empty_as_null=False).unique()
    )


def _stored_keys(store: MetadataStore, key: FeatureKey, keys: pl.DataFrame) -> pl.DataFrame:
    """Which of `keys` (the increment key) have live rows of `key`."""
    parent = list(store.graph.spec(key).parent_key)
    latest = store.latest(key)
    if latest is None or keys.is_empty():
        return keys.clear()
    found = latest.select(*parent).join(store.engine.lazy(keys), on=parent, how="semi")
    return found.unique().collect(backend="polars").to_native()


def _by_ids(store: MetadataStore, key: FeatureKey, merged: pl.DataFrame) -> pl.DataFrame:
    """Changing samples by id: an expansion's stored children stand for their parent."""
    spec = store.graph.spec(key)
    ids, parent = list(spec.id_columns), list(spec.parent_key)
    if ids == parent:
        return merged.select(*ids, _FIELDS, _KIND)
    latest = store.latest(key)
    if latest is None or merged.is_empty():
        return pl.DataFrame(
            schema={
                **{c: store.graph.definition(key).columns[c] for c in ids},
                _FIELDS: pl.List(pl.String),
                _KIND: pl.String,
            }
        )
    children = (
        latest.select(*ids)
        .join(store.engine.lazy(merged.select(parent)), on=parent, how="semi")
        .collect(backend="polars")
        .to_native()
    )
    return children.join(merged, on=parent, how="inner").select(*ids, _FIELDS, _KIND)
