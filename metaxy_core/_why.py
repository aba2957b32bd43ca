"""Why a sample is stale: per stale field, the chain of causes upstream.

A stored row does not keep its parents' data versions, only their hash. The parents it
was computed from are found in their history instead: the latest parent row written
before the row (write ids are ordered in time). Comparing that row with the parent's
row now names what moved, from what to what, when and by which run; the same question
is then asked of the parent, down to a code version bump or a root's changed input.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import polars as pl

from metaxy_core import _columns as C
from metaxy_core._errors import SpecError
from metaxy_core._guard import guarded_function
from metaxy_core._keys import FeatureKey
from metaxy_core._pending import Pending, pending
from metaxy_core._spec import FeatureDep
from metaxy_core.stores._base import MetadataStore

Row = dict[str, Any]


@dataclass(frozen=True)
class Cause:
    """One step of a causal chain: a field of a feature that changed, and why.

    Attributes:
        feature, field: where the change happened.
        kind: `code` (its code version changed), `data` (its data version changed),
            `input` (a root's input changed), `definition` (its deps changed),
            `pending` (it is stale itself and will change once recomputed).
        detail: from what to what, when and by which run.
        causes: the changes upstream that explain this one.
    """

    feature: FeatureKey
    field: str
    kind: str
    detail: str
    causes: tuple["Cause", ...] = ()

    def lines(self, depth: int = 0) -> list[str]:
        """The chain as indented lines."""
        head = f"{'  ' * depth}<- {self.feature}.{self.field}: {self.detail}"
        return [head, *(line for c in self.causes for line in c.lines(depth + 1))]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (causes nested)."""
        return {
            "feature": self.feature.path,
            "field": self.field,
            "kind": self.kind,
            "detail": self.detail,
            "causes": [c.to_dict() for c in self.causes],
        }


@dataclass(frozen=True)
class FieldExplanation:
    """A stale field of a sample: the reason the increment gives and the causes found."""

    field: str
    reason: str
    causes: tuple[Cause, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "field": self.field,
            "reason": self.reason,
            "causes": [c.to_dict() for c in self.causes],
        }


@dataclass(frozen=True)
class SampleExplanation:
    """Why one sample of a feature needs (or will need) work.

    Attributes:
        feature: the feature.
        sample: the sample's id values.
        state: `stale`, `up to date`, `new`, `orphaned`, `deleted`, or `unknown (no row,
            not new)` for ids the feature never had and would not compute.
        fields: the stale fields, each with its causes.
        pending: upstream fields this sample reads that are pending themselves: the
            sample turns stale once they are recomputed.
    """

    feature: FeatureKey
    sample: Row
    state: str
    fields: tuple[FieldExplanation, ...] = ()
    pending: tuple[Cause, ...] = ()

    def describe(self) -> str:
        """A few lines: the state, then each stale field and pending upstream with its chain."""
        ids = ", ".join(f"{k}={v}" for k, v in self.sample.items())
        lines = [f"{self.feature} [{ids}]: {self.state}"]
        for f in self.fields:
            lines.append(f"  {f.field}: stale ({f.reason})")
            lines += [f"    {line}" for c in f.causes for line in c.lines()]
        if self.pending:
            lines.append("  pending upstream (stale once recomputed):")
            lines += [f"    {line}" for c in self.pending for line in c.lines()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "feature": self.feature.path,
            "sample": {k: _plain(v) for k, v in self.sample.items()},
            "state": self.state,
            "fields": [f.to_dict() for f in self.fields],
            "pending": [c.to_dict() for c in self.pending],
        }


@guarded_function
def why(
    store: MetadataStore,
    feature: Any,
    ids: Any,
    *,
    samples: Mapping[Any, Any] | None = None,
) -> list[SampleExplanation]:
    """Explain, for each sample, which fields are stale and the chain of causes upstream.

    Args:
        store: the store.
        feature: key, spec or class.
        ids: the samples: a frame with the id columns, a list of dicts, or a list of
            values when the feature has one id column (text is cast to its type).
        samples: root feature -> its inputs (as for `resolve_update`).

    Returns:
        One `SampleExplanation` per sample, in the order given.

    Raises:
        SpecError: ids that lack an id column or do not fit its type.
        UnknownFeatureError: the feature is not in the store's graph.

    Example:
        >>> print(why(store, "face_detection", ["s0001"])[0].describe())  # doctest: +SKIP
        face_detection [sample_id=s0001]: stale
          faces: stale (upstream)
            <- crop.frames: data version 1f2e3d4c -> 9a8b7c6d, written ... by run-2
    """
    spec = store.graph.spec(feature)
    wanted = _ids_frame(store, spec.key, ids)
    walker = _Walker(store, {store.graph.spec(k).key: v for k, v in (samples or {}).items()})
    return [walker.explain(spec.key, row) for row in wanted.iter_rows(named=True)]


class _Walker:
    """Caches each feature's history and pending work for one `why` call."""

    def __init__(self, store: MetadataStore, samples: Mapping[FeatureKey, Any]) -> None:
        self.store = store
        self.graph = store.graph
        self.samples = samples
        self._history: dict[FeatureKey, pl.DataFrame] = {}
        self._pending: dict[FeatureKey, Pending] = {}

    # -- the sample itself -----------------------------------------------------------------

    def explain(self, key: FeatureKey, sample: Row) -> SampleExplanation:
        spec = self.graph.spec(key)
        now = self.row_as_of(key, sample, None, keep_deleted=True)
        work = self.pending(key)
        parent = {c: sample[c] for c in spec.parent_key}
        stale = _matching(work.stale, parent)
        if now is not None and now[C.DELETED_AT] is not None:
            return SampleExplanation(key, sample, "deleted")
        if now is None:
            state = "new" if _matching(work.new, parent).height else "unknown (no row, not new)"
            return SampleExplanation(key, sample, state, (), self.pending_upstream(key, sample))
        if _matching(work.orphaned, sample).height:
            return SampleExplanation(key, sample, "orphaned")
        fields: list[FieldExplanation] = []
        if stale.height:
            row = stale.row(0, named=True)
            for f, reason in zip(row[C.STALE_FIELDS], row[C.STALE_REASONS], strict=True):
                fields.append(
                    FieldExplanation(f, reason, tuple(self.field_causes(key, f, now, None)))
                )
        state = "stale" if fields else "up to date"
        return SampleExplanation(
            key, sample, state, tuple(fields), self.pending_upstream(key, sample)
        )

    # -- causes ------------------------------------------------------------------------------

    def field_causes(self, key: FeatureKey, f: str, then: Row, now: Row | None) -> list[Cause]:
        """Why `key.f` as computed in row `then` differs from `now` (None: the definition now)."""
        spec = self.graph.spec(key)
        causes: list[Cause] = []
        was = then.get(C.code_version_column(f))
        is_ = spec.field(f).code_version if now is None else now.get(C.code_version_column(f))
        if was != is_:
            causes.append(Cause(key, f, "code", f"code version {was} -> {is_}"))
        if spec.is_root:
            if not causes:
                causes.append(Cause(key, f, "input", "its input changed (root data)"))
            return causes
        for up, g in self.graph.field_parents(key, f):
            dep = next(d for d in spec.deps if d.feature == up)
            cause = self.parent_cause(key, dep, g, then, now)
            if cause is not None:
                causes.append(cause)
        if not causes:
            causes.append(Cause(key, f, "definition", "its deps or upstream fields changed"))
        return causes

    def parent_cause(
        self, key: FeatureKey, dep: FeatureDep, g: str, then: Row, now: Row | None
    ) -> Cause | None:
        """How upstream field `g` moved between what `then` read and what `now` reads."""
        up = dep.feature
        column = C.data_version_column(g)
        if dep.lineage.kind == "aggregation":
            return self.group_cause(key, dep, g, then, now)
        sample = _upstream_sample(self.graph.spec(up).id_columns, dep, then)
        before = self.row_as_of(up, sample, then[C.WRITE_ID])
        after = self.row_as_of(up, sample, None if now is None else now[C.WRITE_ID])
        if before is None or after is None or before.get(column) == after.get(column):
            return None
        detail = (
            f"data version {_short(before.get(column))} -> {_short(after.get(column))}, "
            f"{_written(after)}"
        )
        return Cause(up, g, "data", detail, tuple(self.field_causes(up, g, before, after)))

    def group_cause(
        self, key: FeatureKey, dep: FeatureDep, g: str, then: Row, now: Row | None
    ) -> Cause | None:
        """An aggregation: which member rows of the group moved in field `g`."""
        up = dep.feature
        column = C.data_version_column(g)
        on = {c: then[c] for c in dep.lineage.on}
        inverse = {new: old for old, new in dep.rename_map.items()}
        members = _matching(self.history(up), {inverse.get(c, c): v for c, v in on.items()})
        ids = list(self.graph.spec(up).id_columns)
        changed: list[tuple[Row | None, Row]] = []
        for member in members.select(ids).unique().sort(ids).iter_rows(named=True):
            before = self.row_as_of(up, member, then[C.WRITE_ID])
            after = self.row_as_of(up, member, None if now is None else now[C.WRITE_ID])
            if after is not None and (before is None or before.get(column) != after.get(column)):
                changed.append((before, after))
        if not changed:
            return None
        before, after = changed[0]
        example = ", ".join(f"{c}={after[c]}" for c in ids)
        detail = f"{len(changed)} member row(s) changed, e.g. [{example}] {_written(after)}"
        causes = () if before is None else tuple(self.field_causes(up, g, before, after))
        return Cause(up, g, "data", detail, causes)

    def pending_upstream(
        self, key: FeatureKey, sample: Row, only: set[str] | None = None
    ) -> tuple[Cause, ...]:
        """Upstream fields the sample reads that are pending themselves (recursively)."""
        spec = self.graph.spec(key)
        out: list[Cause] = []
        refs = sorted(
            {
                r
                for f in spec.field_keys
                if only is None or f in only
                for r in self.graph.field_parents(key, f)
            }
        )
        for up, g in refs:
            dep = next(d for d in spec.deps if d.feature == up)
            if dep.lineage.kind == "aggregation":
                continue  # a group's members: `plan` counts them; too many to walk here
            upstream = _upstream_sample(self.graph.spec(up).id_columns, dep, sample)
            work = self.pending(up)
            up_parent = {c: upstream[c] for c in self.graph.spec(up).parent_key}
            stale = _matching(work.stale, up_parent)
            reasons = _reasons(stale)
            if g in reasons:
                now = self.row_as_of(up, upstream, None)
                causes = () if now is None else tuple(self.field_causes(up, g, now, None))
                out.append(Cause(up, g, "pending", f"stale itself ({reasons[g]})", causes))
                continue
            deeper = self.pending_upstream(up, upstream, {g})
            if deeper:
                out.append(
                    Cause(up, g, "pending", "up to date, but its upstream is pending", deeper)
                )
        return tuple(out)

    # -- rows ----------------------------------------------------------------------------------

    def history(self, key: FeatureKey) -> pl.DataFrame:
        if key not in self._history:
            self._history[key] = self.store.history(key)
        return self._history[key]

    def pending(self, key: FeatureKey) -> Pending:
        if key not in self._pending:
            self._pending[key] = pending(self.store, key, self.samples.get(key))
        return self._pending[key]

    def row_as_of(
        self, key: FeatureKey, sample: Row, write_id: str | None, *, keep_deleted: bool = False
    ) -> Row | None:
        """The sample's latest row written no later than `write_id` (None: now).

        A deletion marker reads as no row unless `keep_deleted`.
        """
        rows = _matching(self.history(key), sample)
        if write_id is not None:
            rows = rows.filter(pl.col(C.WRITE_ID) <= write_id)
        if rows.is_empty():
            return None
        row = rows.sort(C.WRITE_ID).row(-1, named=True)
        if row[C.DELETED_AT] is not None and not keep_deleted:
            return None
        return row


def _matching(frame: pl.DataFrame, values: Mapping[str, Any]) -> pl.DataFrame:
    """Rows of `frame` whose columns equal `values` (columns it lacks are ignored)."""
    condition = pl.lit(True)
    for column, value in values.items():
        if column in frame.columns:
            condition = condition & (pl.col(column) == pl.lit(value, frame.schema[column]))
    return frame.filter(condition)


def _upstream_sample(up_ids: Sequence[str], dep: FeatureDep, row: Row) -> Row:
    """The upstream id values of the upstream row behind `row` (identity or expansion)."""
    rename = dep.rename_map
    return {c: row[rename.get(c, c)] for c in up_ids}


def _ids_frame(store: MetadataStore, key: FeatureKey, ids: Any) -> pl.DataFrame:
    """The requested samples as a frame typed like the feature's id columns."""
    spec = store.graph.spec(key)
    columns = list(spec.id_columns)
    types = {c: store.graph.definition(key).columns[c] for c in columns}
    if isinstance(ids, pl.DataFrame):
        frame = ids
    elif isinstance(ids, str) or not isinstance(ids, Sequence | pl.Series):
        raise SpecError(f"why on {key}: pass ids as a frame or a list, got {type(ids).__name__}.")
    elif all(isinstance(i, Mapping) for i in cast(Sequence[Any], ids)):
        frame = pl.DataFrame(list(cast(Sequence[Any], ids)), infer_schema_length=None)
    elif len(columns) == 1:
        frame = pl.DataFrame({columns[0]: list(cast(Sequence[Any], ids))})
    else:
        raise SpecError(
            f"why on {key}: it has id columns {columns}; name each sample by all of them "
            "(e.g. a list of dicts)."
        )
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SpecError(f"why on {key}: the ids lack id column(s) {missing}.")
    try:
        return frame.select(pl.col(c).cast(types[c], strict=True) for c in columns)
    except pl.exceptions.PolarsError as exc:
        raise SpecError(f"why on {key}: ids do not fit the id column types {types}: {exc}") from exc


def _reasons(stale: pl.DataFrame) -> dict[str, str]:
    """Stale field -> reason of the first row of an increment's stale frame."""
    if stale.is_empty():
        return {}
    row = stale.row(0, named=True)
    return dict(zip(row[C.STALE_FIELDS], row[C.STALE_REASONS], strict=True))


def _short(value: Any) -> str:
    return "null" if value is None else str(value)[:8]


def _written(row: Row) -> str:
    at = row.get(C.UPDATED_AT)
    when = at.strftime("%Y-%m-%d %H:%M:%S") if at is not None else "?"
    run = row.get(C.MATERIALIZATION_ID) or "no run id"
    return f"written {when} by {run}"


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)
