"""Migrations: accept a new definition without recomputing, and deletes that follow lineage.

Both are audited: the rows they write carry the audit id as `metaxy_materialization_id`,
and a record (who, when, why, which graph version, how many rows) is appended to the
store's audit table (`MetadataStore.audit_log()`, `metaxy history`).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from metaxy_core import _columns as C
from metaxy_core._errors import SpecError
from metaxy_core._guard import guarded_function
from metaxy_core._keys import FeatureKey
from metaxy_core._spec import FeatureSpec
from metaxy_core.stores._audit import new_audit_id
from metaxy_core.stores._base import MetadataStore


@dataclass(frozen=True)
class AcceptReport:
    """What `accept` did (or, with `dry_run`, would do).

    Attributes:
        feature: the accepted feature.
        samples: the accepted samples (the increment's key columns).
        rows: rows written (expansion features write every child of an accepted parent).
        skipped: stale samples left alone: they are also stale in fields not accepted.
        new: samples never computed, which no accept can cover.
        fields: the accepted fields (None: every stale field).
        dry_run: nothing was written.
        audit_id: the audit record's id (None for a dry run or when nothing was accepted).
    """

    feature: FeatureKey
    samples: pl.DataFrame
    rows: int
    skipped: int
    new: int
    fields: tuple[str, ...] | None
    dry_run: bool
    audit_id: str | None

    def describe(self) -> str:
        """One line: how many samples were accepted, skipped or are new."""
        verb = "would accept" if self.dry_run else "accepted"
        text = f"{self.feature}: {verb} {self.samples.height} sample(s)"
        if self.skipped:
            text += f"; {self.skipped} skipped (stale in fields not accepted: recompute them)"
        if self.new:
            text += f"; {self.new} new (never computed: recompute them)"
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (without the sample ids)."""
        return {
            "feature": self.feature.path,
            "accepted": self.samples.height,
            "rows": self.rows,
            "skipped": self.skipped,
            "new": self.new,
            "fields": None if self.fields is None else list(self.fields),
            "dry_run": self.dry_run,
            "audit_id": self.audit_id,
        }


@dataclass(frozen=True)
class DeleteReport:
    """What `delete` did (or, with `dry_run`, would do): samples per feature.

    Attributes:
        feature: the feature named by the caller.
        deleted: samples deleted per feature path, the named feature first, then its
            dependents in topological order (with `cascade`).
        hard: rows were physically removed, history included.
        dry_run: nothing was deleted.
        audit_id: the audit record's id (None for a dry run or when nothing matched).
    """

    feature: FeatureKey
    deleted: dict[str, int] = field(default_factory=dict[str, int])
    hard: bool = False
    dry_run: bool = False
    audit_id: str | None = None

    @property
    def total(self) -> int:
        """Samples deleted over every feature."""
        return sum(self.deleted.values())

    def describe(self) -> str:
        """One line per feature."""
        verb = "would delete" if self.dry_run else "deleted"
        how = "hard" if self.hard else "soft"
        return "\n".join(f"{k}: {verb} {n} sample(s) ({how})" for k, n in self.deleted.items())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "feature": self.feature.path,
            "deleted": dict(self.deleted),
            "hard": self.hard,
            "dry_run": self.dry_run,
            "audit_id": self.audit_id,
        }


@guarded_function
def accept(
    store: MetadataStore,
    feature: Any,
    *,
    reason: str,
    fields: Iterable[str] | None = None,
    filters: Sequence[str] | str = (),
    samples: Any = None,
    dry_run: bool = False,
    actor: str | None = None,
) -> AcceptReport:
    """Accept the current definition for stale samples without recomputing them.

    For each selected stale sample the stored row is written again with the provenance
    the current definition expects and its user columns and data versions unchanged,
    so it is no longer stale and downstream features see nothing to do, exactly as if it
    had been recomputed with identical output. Use it after a refactor that bumped a
    code version without changing results. An audit record is appended.

    Args:
        store: the store holding the feature.
        feature: key, spec or class.
        reason: why the samples are accepted (kept in the audit record).
        fields: accept only these fields; samples also stale in other fields are
            skipped (they need a recompute anyway). Default: every stale field.
        filters: conditions in the filter language on the feature's stored columns
            choosing which samples to accept.
        samples: for a root feature, its inputs as for `resolve_update` (a root's
            expected provenance comes from them).
        dry_run: count what would be accepted, write nothing.
        actor: who accepts (default: the operating system user).

    Returns:
        An `AcceptReport`.

    Raises:
        SpecError: no reason, an unknown field, a malformed filter, or a root feature
            without `samples`.
        UnknownFeatureError: the feature is not in the store's graph.

    Example:
        >>> report = accept(store, "crop", fields=["frames"], reason="refactor")  # doctest: +SKIP
        >>> report.describe()                                                   # doctest: +SKIP
        'crop: accepted 100 sample(s)'
    """
    spec = store.graph.spec(feature)
    why = _reason(reason, f"accept of {spec.key}")
    chosen_fields = _fields(spec, fields)
    if spec.is_root and samples is None:
        raise SpecError(
            f"Accept of {spec.key}: it is a root feature, whose expected provenance comes "
            "from its inputs; call metaxy_core.migrations.accept(store, feature, samples=...) "
            "with its ids plus one input version column per field, as for resolve_update."
        )
    parent = list(spec.parent_key)
    increment = store.resolve_update(spec.key, samples=samples)
    stale = increment.stale
    if filters:
        stale = stale.join(_chosen(store, spec, filters, parent), on=parent, how="semi")
    if chosen_fields is not None:
        covered = pl.col(C.STALE_FIELDS).list.eval(pl.element().is_in(chosen_fields)).list.all()
        skipped = stale.filter(~covered).height
        stale = stale.filter(covered)
    else:
        skipped = 0
    ids = stale.select(parent).unique().sort(parent)
    report = AcceptReport(
        spec.key, ids, 0, skipped, increment.new.height, chosen_fields, dry_run, None
    )
    if stale.is_empty():
        return report
    rows = _restamped(store, spec, stale)
    if dry_run:
        return replace(report, rows=rows.height)
    audit_id = new_audit_id("accept")
    written = store.write(spec.key, rows, materialization_id=audit_id)
    details = {
        "fields": None if chosen_fields is None else list(chosen_fields),
        "filters": [filters] if isinstance(filters, str) else list(filters),
        "samples": ids.height,
        "skipped": skipped,
    }
    store.record_audit(
        audit_id,
        kind="accept",
        feature=spec.key,
        reason=why,
        rows=written,
        details=details,
        actor=actor,
    )
    return replace(report, rows=written, audit_id=audit_id)


# Whether accepted rows keep their stored data versions (tests switch it off to show that
# downstream features would otherwise all turn stale).
KEEP_DATA_VERSIONS = True


def _restamped(store: MetadataStore, spec: FeatureSpec, stale: pl.DataFrame) -> pl.DataFrame:
    """The stored rows of the stale samples with the expected provenance, data versions kept."""
    parent = list(spec.parent_key)
    latest = store.latest(spec.key)
    assert latest is not None, "stale samples have stored rows"
    keys = store.engine.lazy(stale.select(parent).unique())
    stored = latest.join(keys, on=parent, how="semi").collect(backend="polars").to_native()
    kept_versions = [
        C.data_version_column(f)
        for f in spec.field_keys
        if C.data_version_column(f) in stored.columns and KEEP_DATA_VERSIONS
    ]
    rows = stored.select(*(c for c in stored.columns if not C.is_system(c)), *kept_versions)
    declared = store.graph.definition(spec.key).columns
    rows = rows.with_columns(
        pl.lit(None, dtype).alias(c) for c, dtype in declared.items() if c not in rows.columns
    )
    provenance = [C.PROVENANCE, *(C.provenance_column(f) for f in spec.field_keys)]
    return rows.join(stale.select(*parent, *provenance), on=parent, how="left")


@guarded_function
def delete(
    store: MetadataStore,
    feature: Any,
    *,
    filters: Sequence[str] | str = (),
    hard: bool = False,
    cascade: bool = False,
    dry_run: bool = False,
    reason: str = "",
    actor: str | None = None,
) -> DeleteReport:
    """Delete samples chosen by a filter, and with `cascade` everything derived from them.

    `cascade` follows lineage to every downstream feature: identity (same ids),
    expansion (the children of a deleted parent) and aggregation (the group row a deleted
    member belongs to; it is recomputed from the remaining members on the next run).
    Dependents are deleted before the samples they were derived from. Soft deletes
    append markers (a re-write revives a sample); hard deletes remove every row of the
    samples, history included. An audit record is appended.

    Args:
        store: the store holding the feature.
        feature: key, spec or class.
        filters: conditions in the filter language on the feature's stored columns; no
            filter chooses every sample.
        hard: remove the rows physically instead of appending deletion markers.
        cascade: also delete the samples of downstream features derived from them.
        dry_run: count what would be deleted, delete nothing.
        reason: why (kept in the audit record).
        actor: who deletes (default: the operating system user).

    Returns:
        A `DeleteReport` with the samples deleted per feature.

    Raises:
        SpecError: a malformed filter or one naming an unknown column.
        UnknownFeatureError: the feature is not in the store's graph.

    Example:
        >>> report = delete(store, "video", filters="id = 's1'", cascade=True)  # doctest: +SKIP
        >>> report.deleted                                                  # doctest: +SKIP
        {'video': 1, 'crop': 1, 'face_detection': 1, 'transcript': 1}
    """
    spec = store.graph.spec(feature)
    if not isinstance(reason, str):
        raise SpecError(f"Delete of {spec.key}: reason must be text.")
    chosen = {spec.key: store.read(spec.key, filters=filters, include_deleted=hard)}
    if cascade:
        for key in store.graph.downstream([spec.key], include_self=False):
            derived = _derived(store, store.graph.spec(key), chosen, include_deleted=hard)
            if derived is not None:
                chosen[key] = derived
    counts = {key.path: rows.height for key, rows in chosen.items()}
    report = DeleteReport(spec.key, counts, hard, dry_run)
    if dry_run or not sum(counts.values()):
        return report
    audit_id = new_audit_id("hard-delete" if hard else "delete")
    for key in reversed(list(chosen)):  # dependents first: never left without their source
        ids = chosen[key].select(store.graph.spec(key).id_columns)
        if ids.height:
            counts[key.path] = store.delete(key, ids, hard=hard, materialization_id=audit_id)
    store.record_audit(
        audit_id,
        kind="hard delete" if hard else "delete",
        feature=spec.key,
        reason=reason,
        rows=sum(counts.values()),
        details={"filters": filters, "cascade": cascade, "deleted": counts},
        actor=actor,
    )
    return DeleteReport(spec.key, counts, hard, dry_run, audit_id)


def _derived(
    store: MetadataStore,
    spec: FeatureSpec,
    chosen: Mapping[FeatureKey, pl.DataFrame],
    *,
    include_deleted: bool,
) -> pl.DataFrame | None:
    """The rows of `spec`'s feature derived from the chosen upstream rows (None: none)."""
    latest = store.latest(spec.key, include_deleted=include_deleted)
    if latest is None:
        return None
    on = list(spec.parent_key)  # every dep's rows map onto it (aggregation: the group)
    parts: list[pl.DataFrame] = []
    for dep in spec.deps:
        upstream = chosen.get(dep.feature)
        if upstream is None or upstream.is_empty():
            continue
        renamed = upstream.rename({k: v for k, v in dep.rename_map.items() if k in upstream})
        keys = store.engine.lazy(renamed.select(on).unique())
        parts.append(latest.join(keys, on=on, how="semi").collect(backend="polars").to_native())
    if not parts:
        return None
    ids = list(spec.id_columns)
    return pl.concat(parts, how="diagonal_relaxed").unique(subset=ids).sort(ids)


def _chosen(
    store: MetadataStore, spec: FeatureSpec, filters: Sequence[str] | str, parent: list[str]
) -> pl.DataFrame:
    """The increment keys of the samples whose stored rows match `filters`."""
    rows = store.read(spec.key, filters=filters, columns=[])  # the key is part of the ids
    return rows.select(parent).unique()


def _reason(reason: Any, what: str) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise SpecError(f"{what}: give a reason (it is kept in the audit record).")
    return reason.strip()


def _fields(spec: FeatureSpec, fields: Iterable[str] | None) -> tuple[str, ...] | None:
    if fields is None:
        return None
    chosen = (fields,) if isinstance(fields, str) else tuple(fields)
    unknown = [f for f in chosen if f not in spec.field_keys]
    if unknown or not chosen:
        raise SpecError(
            f"Feature {spec.key} has no field(s) {unknown}; its fields: {list(spec.field_keys)}."
        )
    return chosen
