"""What moved between two versions of a feature graph, and which moves a store must refuse."""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import polars as pl

from metaxy_core._errors import GraphError
from metaxy_core._graph import FeatureGraph
from metaxy_core._keys import FeatureKey
from metaxy_core.versioning._definitions import field_version


class ChangeKind(StrEnum):
    """The kinds of edits `GraphChanges` reports."""

    FEATURE_ADDED = "feature added"
    FEATURE_REMOVED = "feature removed"
    FIELD_ADDED = "field added"
    FIELD_REMOVED = "field removed"
    CODE_VERSION = "code version bumped"
    UPSTREAM_VERSION = "version moved upstream"
    DEPS = "deps changed"
    ID_COLUMNS = "id columns changed"
    COLUMN_ADDED = "column added"
    COLUMN_REMOVED = "column removed"
    COLUMN_TYPE = "column type changed"


@dataclass(frozen=True)
class Change:
    """One edit of one feature (`field` or `column` set where it applies)."""

    feature: FeatureKey
    kind: ChangeKind
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.feature}: {self.kind.value}{' ' + self.detail if self.detail else ''}"


@dataclass(frozen=True)
class GraphChanges:
    """The edits between an earlier graph and a later one, feature by feature.

    Example:
        >>> changes = GraphChanges.between(old_graph, new_graph)  # doctest: +SKIP
        >>> print(changes.describe())                            # doctest: +SKIP
        video: field added 'subtitles'
    """

    changes: tuple[Change, ...] = ()

    @classmethod
    def between(cls, before: FeatureGraph, after: FeatureGraph) -> "GraphChanges":
        """Compare two graphs: features and fields added or removed, versions moved, columns.

        Args:
            before: the earlier graph (e.g. rebuilt from a store's last snapshot).
            after: the later graph.

        Returns:
            The changes, in the later graph's topological order (removed features last).
        """
        found: list[Change] = []
        for key in after.keys:
            if key not in before:
                found.append(Change(key, ChangeKind.FEATURE_ADDED))
            else:
                found += _feature_changes(before, after, key)
        found += [Change(k, ChangeKind.FEATURE_REMOVED) for k in before.keys if k not in after]
        return cls(tuple(found))

    def __bool__(self) -> bool:
        return bool(self.changes)

    def of(self, feature: Any) -> tuple[Change, ...]:
        """The changes of one feature."""
        key = FeatureKey.of(feature)
        return tuple(c for c in self.changes if c.feature == key)

    def describe(self) -> str:
        """One line per change ("no changes" when there is none)."""
        return "\n".join(str(c) for c in self.changes) or "no changes"


def _feature_changes(before: FeatureGraph, after: FeatureGraph, key: FeatureKey) -> list[Change]:
    old, new = before.definition(key), after.definition(key)
    out: list[Change] = []
    if old.spec.id_columns != new.spec.id_columns:
        out.append(
            Change(
                key,
                ChangeKind.ID_COLUMNS,
                f"{list(old.spec.id_columns)} -> {list(new.spec.id_columns)}",
            )
        )
    if old.spec.deps != new.spec.deps:
        out.append(Change(key, ChangeKind.DEPS, _deps_detail(old.spec.deps, new.spec.deps)))
    old_fields, new_fields = set(old.spec.field_keys), set(new.spec.field_keys)
    for f in new.spec.field_keys:
        if f not in old_fields:
            out.append(Change(key, ChangeKind.FIELD_ADDED, repr(f)))
            continue
        was, now = old.spec.field(f).code_version, new.spec.field(f).code_version
        if was != now:
            out.append(Change(key, ChangeKind.CODE_VERSION, f"{f!r} {was} -> {now}"))
        elif field_version(before, key, f) != field_version(after, key, f):
            out.append(Change(key, ChangeKind.UPSTREAM_VERSION, f"{f!r} (its parent fields moved)"))
    out += [
        Change(key, ChangeKind.FIELD_REMOVED, repr(f))
        for f in old.spec.field_keys
        if f not in new_fields
    ]
    out += _column_changes(key, old.columns, new.columns)
    return out


def _deps_detail(old: tuple[Any, ...], new: tuple[Any, ...]) -> str:
    was = {d.feature.path: d for d in old}
    now = {d.feature.path: d for d in new}
    parts = [f"+{k}" for k in now if k not in was] + [f"-{k}" for k in was if k not in now]
    parts += [f"~{k}" for k in now if k in was and was[k] != now[k]]
    return ", ".join(parts)


def _column_changes(
    key: FeatureKey, old: Mapping[str, pl.DataType], new: Mapping[str, pl.DataType]
) -> list[Change]:
    out = [Change(key, ChangeKind.COLUMN_ADDED, repr(c)) for c in new if c not in old]
    out += [Change(key, ChangeKind.COLUMN_REMOVED, repr(c)) for c in old if c not in new]
    out += [
        Change(key, ChangeKind.COLUMN_TYPE, f"{c!r} {old[c]} -> {new[c]}")
        for c in new
        if c in old and old[c] != new[c]
    ]
    return out


def refuse_breaking_changes(
    graph: FeatureGraph,
    previous: FeatureGraph | None,
    stored_schemas: Mapping[FeatureKey, Mapping[str, pl.DataType]],
) -> None:
    """Refuse edits a store cannot follow for features it holds rows of.

    Id columns must stay what they were (the snapshot says what they were; the stored
    columns say it when no snapshot was recorded), and a declared column keeps the type
    its stored rows have.

    Raises:
        GraphError: naming the feature, the change and what to do instead.
    """
    for key, stored in stored_schemas.items():
        definition = graph.definition(key)
        ids = list(definition.spec.id_columns)
        was = (
            list(previous.spec(key).id_columns)
            if previous is not None and key in previous
            else None
        )
        missing = [c for c in ids if c not in stored]
        if (was is not None and was != ids) or missing:
            before = was if was is not None else f"columns without {missing}"
            raise GraphError(
                f"Feature {key}: id columns changed from {before} to {ids}, but the store "
                "holds rows keyed the old way. Give the new keying a new feature key (and "
                "backfill it from the old one), or use a new store."
            )
        clashes = [
            f"{c!r} is stored as {stored[c]} but declared {dtype}"
            for c, dtype in definition.columns.items()
            if c in stored and stored[c] != pl.Null and stored[c] != dtype
        ]
        if clashes:
            raise GraphError(
                f"Feature {key}: column types changed against the stored rows: "
                f"{'; '.join(clashes)}. Stores never re-cast history: add a new column "
                "instead, or give the feature a new key."
            )
