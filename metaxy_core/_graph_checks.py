"""Graph build checks: deps, edges, renames, filters and inherited id types."""

from collections.abc import Mapping
from typing import Any

from metaxy_core import _columns as C
from metaxy_core._definition import FeatureDefinition
from metaxy_core._errors import GraphError, SpecError
from metaxy_core._filters import parse_filter
from metaxy_core._keys import FeatureKey
from metaxy_core._spec import FeatureDep, FeatureSpec

# The graph's definitions built so far, by key (upstreams come first).
Definitions = Mapping[FeatureKey, FeatureDefinition]


def validate_deps(defs: Definitions, definition: FeatureDefinition) -> None:
    spec = definition.spec
    for dep in spec.deps:
        if dep.feature not in defs:
            raise GraphError(
                f"Feature {spec.key} depends on {dep.feature}, which is not in the graph."
            )
        _validate_edge(defs, spec, dep, defs[dep.feature])
    if spec.deps and all(d.optional for d in spec.deps):
        raise GraphError(f"Feature {spec.key}: at least one dep must be non-optional.")
    kinds = {d.lineage.on for d in spec.deps if d.lineage.kind == "expansion"}
    if len(kinds) > 1:
        raise GraphError(f"Feature {spec.key}: all expansion deps must use the same 'on' columns.")
    seen: dict[str, FeatureKey] = {}
    for up_key, columns in upstream_columns(defs, spec).items():
        for column in columns.values():
            if column in spec.parent_key:
                continue
            if column in seen:
                raise GraphError(
                    f"Feature {spec.key}: column {column!r} comes from both {seen[column]} and "
                    f"{up_key}. Hint: rename it on one dep, e.g. "
                    f"FeatureDep({up_key.path!r}, "
                    f"rename={{{column!r}: '{up_key.table_name}_{column}'}})."
                )
            seen[column] = up_key


def upstream_columns(defs: Definitions, spec: FeatureSpec) -> dict[FeatureKey, dict[str, str]]:
    out: dict[FeatureKey, dict[str, str]] = {}
    for dep in spec.deps:
        up = defs[dep.feature]
        if dep.lineage.kind == "aggregation":
            out[dep.feature] = {}
            continue
        chosen = list(up.user_columns) if dep.select is None else list(dep.select)
        out[dep.feature] = {c: dep.rename_map.get(c, c) for c in chosen}
    return out


def _validate_filters(dep: FeatureDep, up: FeatureDefinition, where: str) -> None:
    """Refuse dep filters on unknown columns or mixing kinds now, not at resolve time.

    They read the upstream's columns after rename (all of them, not only the selected
    ones) and its system columns.
    """
    seen = {dep.rename_map.get(c, c): t for c, t in up.columns.items()}
    seen |= C.system_dtypes(up.spec.field_keys)
    for text in dep.filters:
        flt = parse_filter(text)
        try:
            flt.check(seen, where=f"{dep.feature} (after rename)")
        except SpecError as exc:
            renamed = {c: dep.rename_map[c] for c in flt.columns if c in dep.rename_map}
            hint = f" Hint: this dep renames {renamed}; filters use the new names."
            raise GraphError(f"{where}: {exc}{hint if renamed else ''}") from None


def _validate_edge(
    defs: Definitions,
    spec: FeatureSpec,
    dep: FeatureDep,
    up: FeatureDefinition,
) -> None:
    where = f"Feature {spec.key}, dep on {dep.feature}"
    known = set(up.columns)
    for column in [*dep.rename_map, *(dep.select or ())]:
        if column not in known:
            raise GraphError(
                f"{where}: unknown upstream column {column!r}; known: {sorted(known)}."
            )
    if dep.select is not None and set(dep.select) & set(up.spec.id_columns):
        raise GraphError(f"{where}: 'select' lists id columns; they are always carried.")
    _validate_rename(spec, dep, up, where)
    _validate_filters(dep, up, where)
    seen_ids = tuple(dep.rename_map.get(c, c) for c in up.spec.id_columns)
    seen_all = {dep.rename_map.get(c, c) for c in known}
    lineage = dep.lineage
    if lineage.kind == "identity" and set(seen_ids) != set(spec.parent_key):
        raise GraphError(
            f"{where}: identity lineage needs the upstream ids {list(seen_ids)} (after rename) "
            f"to equal this feature's key {list(spec.parent_key)}. Hint: rename, or use "
            "Lineage.aggregation / Lineage.expansion."
        )
    if lineage.kind == "aggregation":
        if set(lineage.on) != set(spec.id_columns):
            raise GraphError(
                f"{where}: aggregation 'on' {list(lineage.on)} must equal the id columns "
                f"{list(spec.id_columns)}."
            )
        missing = set(lineage.on) - seen_all
        if missing:
            raise GraphError(
                f"{where}: aggregation 'on' columns {sorted(missing)} are not upstream columns."
            )
    if lineage.kind == "expansion":
        if not set(lineage.on) < set(spec.id_columns):
            raise GraphError(
                f"{where}: expansion 'on' {list(lineage.on)} must be a strict subset of the "
                f"id columns {list(spec.id_columns)}."
            )
        if set(seen_ids) != set(lineage.on):
            raise GraphError(
                f"{where}: expansion 'on' {list(lineage.on)} must equal the upstream ids "
                f"{list(seen_ids)} (after rename)."
            )
    for f in spec.fields:
        for fdep in f.deps or ():
            if fdep.feature not in {d.feature for d in spec.deps}:
                raise GraphError(
                    f"Feature {spec.key}, field {f.key!r}: {fdep.feature} is not a dep "
                    "of the feature."
                )
            bad = (
                [g for g in fdep.fields or () if g not in defs[fdep.feature].spec.field_keys]
                if fdep.feature in defs
                else []
            )
            if bad:
                raise GraphError(
                    f"Feature {spec.key}, field {f.key!r}: {fdep.feature} has no "
                    f"field(s) {bad}; "
                    f"its fields: {list(defs[fdep.feature].spec.field_keys)}."
                )


def with_upstream_id_types(defs: Definitions, definition: FeatureDefinition) -> FeatureDefinition:
    """Undeclared id columns take their upstream's type; declared ones must agree with it."""
    spec = definition.spec
    inherited: dict[str, Any] = {}
    for dep in spec.deps:
        up = defs[dep.feature]
        seen = {dep.rename_map.get(c, c): t for c, t in up.columns.items()}
        keyed = dep.lineage.on if dep.lineage.kind == "aggregation" else spec.parent_key
        for column in keyed:
            want = seen.get(column)
            have = inherited.get(column, definition.columns[column])
            if want is None or have == want:
                continue
            if column in definition.inferred_ids and column not in inherited:
                inherited[column] = want
                continue
            raise GraphError(
                f"Feature {spec.key}: id column {column!r} is {have} here but {want} in "
                f"{dep.feature}. Hint: declare it as {want}, or leave it undeclared to "
                "inherit it."
            )
    if not inherited:
        return definition
    return FeatureDefinition(
        spec,
        {**definition.columns, **inherited},
        definition.feature_class,
        definition.inferred_ids - set(inherited),
    )


def _validate_rename(spec: FeatureSpec, dep: FeatureDep, up: FeatureDefinition, where: str) -> None:
    """Renamed columns never land on id columns or other upstream columns.

    (`FeatureDep` already refuses system names, `metaxy_*`, on either side.)
    """
    up_ids = set(up.spec.id_columns)
    renamed = dep.rename_map
    kept = {c for c in up.columns if c not in renamed}
    for old, new in dep.rename:
        if old not in up_ids and new in {*spec.id_columns, *spec.parent_key}:
            raise GraphError(
                f"{where}: rename {old!r} -> {new!r} lands a user column on the id column "
                f"{new!r}; only upstream id columns may be renamed onto id columns."
            )
        if new in kept:
            raise GraphError(
                f"{where}: rename {old!r} -> {new!r} collides with the upstream column "
                f"{new!r}, which is not renamed; rename that one too or choose another name."
            )
