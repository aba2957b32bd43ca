"""Increments: which samples of a feature are new, stale (which fields, and why) or orphaned."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._errors import SpecError, StoreError, WriteValidationError
from metaxy_core._guard import guard_public_methods, guarded_function
from metaxy_core._keys import FeatureKey
from metaxy_core._spec import FeatureSpec, key_of


class IncrementStatus(StrEnum):
    """Whether the increment could be computed."""

    OK = "ok"
    UPSTREAM_MISSING = "upstream_missing"


class StaleReason(StrEnum):
    """Why a field of a sample is stale."""

    CODE = "code"
    UPSTREAM = "upstream"


@dataclass(frozen=True)
class Increment:
    """The work a feature needs: new, stale and orphaned samples.

    `new` and `stale` carry the feature's key columns, the upstream columns it reads and the
    provenance the rows must be written with; `stale` also lists per row the stale fields
    (`metaxy_stale_fields`) and why (`metaxy_stale_reasons`, aligned: "code" or "upstream").
    `orphaned` holds the id columns of live samples whose upstream rows are gone.

    Example:
        >>> inc = store.resolve_update(Crop)  # doctest: +SKIP
        >>> to_compute = inc.to_compute()      # doctest: +SKIP
    """

    feature: FeatureKey
    new: pl.DataFrame
    stale: pl.DataFrame
    orphaned: pl.DataFrame
    status: IncrementStatus = IncrementStatus.OK
    missing_upstreams: tuple[FeatureKey, ...] = field(default=())
    # The store that resolved it (for `upstream`); not part of the increment's value.
    source: Any = field(default=None, compare=False, repr=False)
    # How it was found: "full" (the whole diff), "changes" (only samples touched since the
    # feature's watermark) or "watermark" (nothing written since: only what was pending).
    resolved_by: str = field(default="full", compare=False)

    def upstream(self, feature: Any, *, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """The live rows of an upstream feature for the samples of this increment.

        Rows are those sharing the increment's key (new and stale samples): for identity
        and expansion deps the parent rows, for aggregation deps every member of each group.
        Columns are named as this feature sees them (the dep's `rename` applied).

        Args:
            feature: an upstream of this increment's feature (key, spec or class).
            columns: upstream columns to read (by their upstream names); default all.

        Returns:
            A polars frame, sorted by the upstream's ids.

        Raises:
            SpecError: `feature` is not an upstream of this increment's feature.
            StoreError: the increment was not resolved by a store.

        Example:
            >>> members = inc.upstream("utterance")  # doctest: +SKIP
        """
        if self.source is None:
            raise StoreError(
                f"The increment of {self.feature} was built by hand; only increments from "
                "resolve_update can read their upstreams."
            )
        graph = self.source.graph
        spec = graph.spec(self.feature)
        if key_of(feature) not in {d.feature for d in spec.deps}:
            ups = [d.feature.path for d in spec.deps]
            raise SpecError(f"{key_of(feature)} is not an upstream of {spec.key}; its deps: {ups}.")
        dep = spec.dep(feature)
        back = {new: old for old, new in dep.rename}
        key = list(spec.parent_key)
        up_key = [back.get(c, c) for c in key]
        wanted = None if columns is None else [*up_key, *(c for c in columns if c not in up_key)]
        rows = self.source.read(dep.feature, columns=wanted)
        chosen = self.to_compute().select(key).unique().rename(dict(zip(key, up_key, strict=True)))
        rows = rows.join(chosen.cast({c: rows.schema[c] for c in up_key}), on=up_key, how="semi")
        return rows.rename({o: n for o, n in dep.rename if o in rows.columns})

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to compute or delete."""
        return self.new.is_empty() and self.stale.is_empty() and self.orphaned.is_empty()

    def counts(self) -> dict[str, int]:
        """Row counts of new, stale and orphaned."""
        return {
            "new": self.new.height,
            "stale": self.stale.height,
            "orphaned": self.orphaned.height,
        }

    def to_compute(self) -> pl.DataFrame:
        """New and stale rows in one frame (stale-only columns are null for new rows)."""
        return pl.concat([self.new, self.stale], how="diagonal_relaxed")

    def stale_fields(self) -> dict[str, dict[str, int]]:
        """Per stale field: how many samples are stale for each reason."""
        if self.stale.is_empty():
            return {}
        pairs = self.stale.select(
            pl.col(C.STALE_FIELDS).alias("field"), pl.col(C.STALE_REASONS).alias("reason")
        ).explode("field", "reason")
        out: dict[str, dict[str, int]] = {}
        for row in pairs.group_by("field", "reason").len().iter_rows(named=True):
            out.setdefault(row["field"], {})[row["reason"]] = row["len"]
        return out

    def describe(self) -> str:
        """One line for logs."""
        if self.status is IncrementStatus.UPSTREAM_MISSING:
            missing = ", ".join(k.path for k in self.missing_upstreams)
            return f"{self.feature}: upstream never written ({missing}); nothing to do yet"
        c = self.counts()
        return f"{self.feature}: {c['new']} new, {c['stale']} stale, {c['orphaned']} orphaned"


def empty_increment(spec: FeatureSpec, missing: Sequence[FeatureKey]) -> Increment:
    """The increment of a feature whose required upstreams were never written."""
    ids = pl.DataFrame(schema={c: pl.String for c in spec.parent_key})
    return Increment(
        spec.key,
        ids,
        ids,
        pl.DataFrame(schema={c: pl.String for c in spec.id_columns}),
        IncrementStatus.UPSTREAM_MISSING,
        tuple(missing),
    )


_CUR = "__mx_cur__"


def diff(
    spec: FeatureSpec,
    expected: nw.LazyFrame[Any],
    current: nw.LazyFrame[Any],
) -> tuple[nw.LazyFrame[Any], nw.LazyFrame[Any], nw.LazyFrame[Any]]:
    """Compare expected provenance with the latest live rows: (new, stale, orphaned).

    `current` holds the id columns plus per-field provenance and code version columns.
    """
    key = list(spec.parent_key)
    fields = spec.field_keys
    reduced = current.select(
        *key,
        *(nw.col(C.provenance_column(f)).alias(_CUR + "p_" + f) for f in fields),
        *(nw.col(C.code_version_column(f)).alias(_CUR + "c_" + f) for f in fields),
    )
    if key != list(spec.id_columns):  # expansion: children share their parent's provenance
        reduced = reduced.unique(subset=key, keep="any")
    new = expected.join(reduced.select(*key), on=key, how="anti")
    both = expected.join(reduced, on=key, how="inner")
    moved = {
        f: (nw.col(C.provenance_column(f)) != nw.col(_CUR + "p_" + f))
        | nw.col(_CUR + "p_" + f).is_null()
        for f in fields
    }
    code_changed = {
        f: nw.col(_CUR + "c_" + f).is_null()
        | (nw.col(_CUR + "c_" + f) != nw.lit(spec.field(f).code_version))
        for f in fields
    }
    any_moved = moved[fields[0]]
    for f in fields[1:]:
        any_moved = any_moved | moved[f]
    stale = both.filter(any_moved).with_columns(
        nw.concat_str(
            [nw.when(moved[f]).then(nw.lit(f)) for f in fields], separator=",", ignore_nulls=True
        ).alias(C.STALE_FIELDS),
        nw.concat_str(
            [
                nw.when(moved[f]).then(
                    nw.when(code_changed[f])
                    .then(nw.lit(StaleReason.CODE.value))
                    .otherwise(nw.lit(StaleReason.UPSTREAM.value))
                )
                for f in fields
            ],
            separator=",",
            ignore_nulls=True,
        ).alias(C.STALE_REASONS),
    )
    stale = stale.drop(*(c for c in reduced.columns if c.startswith(_CUR)))
    orphaned = current.join(expected.select(*key), on=key, how="anti").select(*spec.id_columns)
    return new, stale, orphaned


def split_lists(stale: pl.DataFrame) -> pl.DataFrame:
    """Turn the comma-joined stale field/reason strings into lists once in polars."""
    return stale.with_columns(
        pl.col(C.STALE_FIELDS).str.split(","), pl.col(C.STALE_REASONS).str.split(",")
    )


@guarded_function
def stamp_children(
    parents: pl.DataFrame, children: pl.DataFrame, *, on: Sequence[str]
) -> pl.DataFrame:
    """Copy each parent's provenance columns onto the child rows it expanded into.

    Use it for expansion (1:N) features: compute children from the increment's parent
    rows, then stamp them before writing. A parent is up to date once it has at least one
    child row: a parent that yields no children stays `new` (write a placeholder child, or
    exclude such parents with a filter on the dep).

    Args:
        parents: the parent rows, with their provenance columns (e.g. `inc.to_compute()`).
        children: the child rows, each naming its parent by the `on` columns.
        on: the parent id columns the children carry.

    Returns:
        `children` with the provenance columns of their parents.

    Raises:
        WriteValidationError: a child names a parent that is not in `parents`.

    Example:
        >>> rows = stamp_children(inc.to_compute(), variants, on=["image_id"])  # doctest: +SKIP
    """
    system = [
        c for c in parents.columns if c == C.PROVENANCE or c.startswith("metaxy_provenance__")
    ]
    stamped = children.drop([c for c in system if c in children.columns]).join(
        parents.select(*on, *system), on=list(on), how="left"
    )
    orphans = stamped.filter(pl.col(C.PROVENANCE).is_null())
    if orphans.height:
        raise WriteValidationError(
            f"{orphans.height} child row(s) name parents outside the increment, e.g. "
            f"{orphans.select(on).unique().head(5).to_dicts()}."
        )
    return stamped


guard_public_methods(Increment)
