"""The explicit feature graph: validation, order and field-level parents."""

import importlib
import inspect
import json
import types
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

from metaxy_core import _columns as C
from metaxy_core._definition import FeatureDefinition, as_definition
from metaxy_core._errors import GraphError, SpecError, UnknownFeatureError
from metaxy_core._feature import Feature
from metaxy_core._filters import parse_filter
from metaxy_core._guard import guard_public_methods
from metaxy_core._keys import FeatureKey
from metaxy_core._snapshots import definition_from_dict, definition_to_dict
from metaxy_core._spec import FeatureDep, FeatureSpec, FieldDep, FieldSpec, key_of

FieldRef = tuple[FeatureKey, str]


def _check_table_name(key: FeatureKey, tables: dict[str, FeatureKey]) -> None:
    """Stores keep one table per feature: two keys must never share a table name."""
    name = key.table_name
    if name.lower().startswith("metaxy_system__"):
        raise GraphError(f"Feature key {key} is reserved: it maps to the system table {name!r}.")
    # DuckDB matches table names regardless of case, and so do some file systems.
    folded = name.lower()
    if folded in tables:
        raise GraphError(
            f"Feature keys {tables[folded]} and {key} map to the same table {name!r} "
            "('-' and '.' become '_', '/' becomes '__', and case is ignored); rename one of them."
        )
    tables[folded] = key


class FeatureGraph:
    """An explicit, validated graph of features.

    Args:
        features: feature classes, `FeatureSpec`s or `FeatureDefinition`s.

    Raises:
        GraphError: on duplicate keys, unknown deps or fields, cycles, or column collisions
            between upstreams (the message names them and suggests a rename).

    Example:
        >>> graph = FeatureGraph([FeatureSpec("video", id_columns=["sample_id"])])
        >>> [k.path for k in graph.topological_order()] == ["video"]
        True
    """

    def __init__(self, features: Iterable[Any]) -> None:
        self._defs: dict[FeatureKey, FeatureDefinition] = {}
        tables: dict[str, FeatureKey] = {}
        for item in features:
            definition = as_definition(item)
            key = definition.spec.key
            if key in self._defs:
                raise GraphError(f"Feature key {key} is defined twice.")
            _check_table_name(key, tables)
            self._defs[key] = definition
        for definition in self._defs.values():
            self._validate_deps(definition)
        self._order = self._toposort()
        for key in self._order:  # upstreams first: inherited types flow down the graph
            self._defs[key] = self._with_upstream_id_types(self._defs[key])
        self._parents = {
            (k, f.key): self._resolve_field_parents(self._defs[k].spec, f)
            for k in self._order
            for f in self._defs[k].spec.fields
        }

    # -- construction helpers -------------------------------------------------------------

    @classmethod
    def from_module(cls, module: types.ModuleType | str) -> "FeatureGraph":
        """Build a graph from every Feature subclass defined in `module`."""
        mod = importlib.import_module(module) if isinstance(module, str) else module
        found = [
            obj
            for obj in vars(mod).values()
            if inspect.isclass(obj)
            and issubclass(obj, Feature)
            and obj is not Feature
            and obj.__module__ == mod.__name__
        ]
        return cls(found)

    def replace(self, *features: Any) -> "FeatureGraph":
        """A copy where the given features replace those with the same keys.

        A bare `FeatureSpec` keeps the replaced feature's typed columns and class, so a
        code-version bump is `graph.replace(Video.spec.with_field_code_version("audio", "2"))`.

        Raises:
            UnknownFeatureError: a key is not in the graph.
        """
        new: dict[FeatureKey, FeatureDefinition] = {}
        for item in features:
            definition = as_definition(item)
            key = definition.spec.key
            if key not in self._defs:
                raise UnknownFeatureError(f"Cannot replace unknown feature {key}.")
            if isinstance(item, FeatureSpec):
                old = self._defs[key]
                columns = {c: old.columns.get(c, t) for c, t in definition.columns.items()}
                definition = FeatureDefinition(item, {**old.columns, **columns}, old.feature_class)
            new[key] = definition
        return FeatureGraph([new.get(k, d) for k, d in self._defs.items()])

    # -- lookups ---------------------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        try:
            return key_of(key) in self._defs
        except Exception:
            return False

    def __len__(self) -> int:
        return len(self._defs)

    @property
    def keys(self) -> tuple[FeatureKey, ...]:
        """Feature keys in topological order."""
        return self._order

    def definition(self, feature: Any) -> FeatureDefinition:
        """The definition of `feature` (key, spec or class)."""
        key = key_of(feature)
        try:
            return self._defs[key]
        except KeyError:
            known = ", ".join(k.path for k in self._order)
            raise UnknownFeatureError(f"Unknown feature {key}; the graph has: {known}.") from None

    def spec(self, feature: Any) -> FeatureSpec:
        """The spec of `feature`."""
        return self.definition(feature).spec

    def topological_order(self) -> tuple[FeatureKey, ...]:
        """Upstreams before downstreams; ties broken by key."""
        return self._order

    def downstream(
        self, features: Iterable[Any], *, include_self: bool = True
    ) -> tuple[FeatureKey, ...]:
        """The downstream closure of `features`, in topological order."""
        start = {self.definition(f).spec.key for f in features}
        closed = set(start)
        for key in self._order:
            if any(d.feature in closed for d in self._defs[key].spec.deps):
                closed.add(key)
        return tuple(k for k in self._order if k in closed and (include_self or k not in start))

    def field_parents(self, feature: Any, field: str) -> tuple[FieldRef, ...]:
        """The upstream (feature, field) pairs a field reads, sorted."""
        spec = self.spec(feature)
        spec.field(field)
        return self._parents[(spec.key, field)]

    def field_downstream(self, feature: Any, field: str) -> tuple[FieldRef, ...]:
        """Every (feature, field) whose provenance depends on `feature.field`, transitively."""
        reached: set[FieldRef] = {(self.spec(feature).key, field)}
        for key in self._order:
            for f in self._defs[key].spec.field_keys:
                if any(p in reached for p in self._parents[(key, f)]):
                    reached.add((key, f))
        reached.discard((self.spec(feature).key, field))
        return tuple(sorted(reached))

    def upstream_columns(self, feature: Any) -> dict[FeatureKey, dict[str, str]]:
        """Per upstream: its user column -> the name this feature sees (after select/rename).

        Aggregation edges carry no upstream columns (one row stands for many).
        """
        return self._upstream_columns(self.spec(feature))

    # -- validation ------------------------------------------------------------------------

    def _validate_deps(self, definition: FeatureDefinition) -> None:
        spec = definition.spec
        for dep in spec.deps:
            if dep.feature not in self._defs:
                raise GraphError(
                    f"Feature {spec.key} depends on {dep.feature}, which is not in the graph."
                )
            self._validate_edge(spec, dep, self._defs[dep.feature])
        if spec.deps and all(d.optional for d in spec.deps):
            raise GraphError(f"Feature {spec.key}: at least one dep must be non-optional.")
        kinds = {d.lineage.on for d in spec.deps if d.lineage.kind == "expansion"}
        if len(kinds) > 1:
            raise GraphError(
                f"Feature {spec.key}: all expansion deps must use the same 'on' columns."
            )
        seen: dict[str, FeatureKey] = {}
        for up_key, columns in self._upstream_columns(spec).items():
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

    def _upstream_columns(self, spec: FeatureSpec) -> dict[FeatureKey, dict[str, str]]:
        out: dict[FeatureKey, dict[str, str]] = {}
        for dep in spec.deps:
            up = self._defs[dep.feature]
            if dep.lineage.kind == "aggregation":
                out[dep.feature] = {}
                continue
            chosen = list(up.user_columns) if dep.select is None else list(dep.select)
            out[dep.feature] = {c: dep.rename_map.get(c, c) for c in chosen}
        return out

    def _validate_filters(self, dep: FeatureDep, up: FeatureDefinition, where: str) -> None:
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

    def _validate_edge(self, spec: FeatureSpec, dep: FeatureDep, up: FeatureDefinition) -> None:
        where = f"Feature {spec.key}, dep on {dep.feature}"
        known = set(up.columns)
        for column in [*dep.rename_map, *(dep.select or ())]:
            if column not in known:
                raise GraphError(
                    f"{where}: unknown upstream column {column!r}; known: {sorted(known)}."
                )
        if dep.select is not None and set(dep.select) & set(up.spec.id_columns):
            raise GraphError(f"{where}: 'select' lists id columns; they are always carried.")
        self._validate_rename(spec, dep, up, where)
        self._validate_filters(dep, up, where)
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
                    [
                        g
                        for g in fdep.fields or ()
                        if g not in self._defs[fdep.feature].spec.field_keys
                    ]
                    if fdep.feature in self._defs
                    else []
                )
                if bad:
                    raise GraphError(
                        f"Feature {spec.key}, field {f.key!r}: {fdep.feature} has no "
                        f"field(s) {bad}; "
                        f"its fields: {list(self._defs[fdep.feature].spec.field_keys)}."
                    )

    def _with_upstream_id_types(self, definition: FeatureDefinition) -> FeatureDefinition:
        """Undeclared id columns take their upstream's type; declared ones must agree with it."""
        spec = definition.spec
        inherited: dict[str, Any] = {}
        for dep in spec.deps:
            up = self._defs[dep.feature]
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

    def _validate_rename(
        self, spec: FeatureSpec, dep: FeatureDep, up: FeatureDefinition, where: str
    ) -> None:
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

    def _toposort(self) -> tuple[FeatureKey, ...]:
        order: list[FeatureKey] = []
        state: dict[FeatureKey, int] = {}

        def visit(key: FeatureKey, path: list[FeatureKey]) -> None:
            if state.get(key) == 2:
                return
            if state.get(key) == 1:
                cycle = " -> ".join(k.path for k in [*path[path.index(key) :], key])
                raise GraphError(f"Dependency cycle: {cycle}.")
            state[key] = 1
            for dep in sorted(self._defs[key].spec.deps, key=lambda d: d.feature):
                visit(dep.feature, [*path, key])
            state[key] = 2
            order.append(key)

        for key in sorted(self._defs):
            visit(key, [])
        return tuple(order)

    def _resolve_field_parents(self, spec: FeatureSpec, f: FieldSpec) -> tuple[FieldRef, ...]:
        parents: set[FieldRef] = set()
        field_deps = f.deps if f.deps is not None else [FieldDep(d.feature) for d in spec.deps]
        for fdep in field_deps:
            up_fields = self._defs[fdep.feature].spec.field_keys
            if fdep.fields is not None:
                chosen = fdep.fields
            elif f.deps is None and f.key in up_fields:
                chosen = (f.key,)
            else:
                chosen = up_fields
            parents.update((fdep.feature, g) for g in chosen)
        return tuple(sorted(parents))

    # -- snapshots -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """A JSON-serializable description of every feature (load it with `from_snapshot`)."""
        from metaxy_core.versioning import feature_version, project_version

        return {
            "project_version": project_version(self),
            "features": [
                definition_to_dict(self._defs[k]) | {"feature_version": feature_version(self, k)}
                for k in self._order
            ],
        }

    def to_json(self) -> str:
        """The snapshot as a JSON string."""
        return json.dumps(self.snapshot(), sort_keys=True)

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any] | str) -> "FeatureGraph":
        """Rebuild a graph (specs and column types, no classes) from `snapshot`."""
        data = json.loads(snapshot) if isinstance(snapshot, str) else snapshot
        return cls([definition_from_dict(f) for f in data["features"]])

    @cached_property
    def project_version(self) -> str:
        """Hash of every feature version."""
        from metaxy_core.versioning import project_version

        return project_version(self)


guard_public_methods(FeatureGraph)  # wrong argument shapes raise SpecError, not TypeError
