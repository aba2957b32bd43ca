"""The explicit feature graph: validation, order and field-level parents."""

import importlib
import inspect
import json
import types
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

from metaxy_core._definition import FeatureDefinition, as_definition
from metaxy_core._errors import GraphError, UnknownFeatureError
from metaxy_core._feature import Feature
from metaxy_core._graph_checks import upstream_columns, validate_deps, with_upstream_id_types
from metaxy_core._guard import guard_public_methods
from metaxy_core._keys import FeatureKey
from metaxy_core._snapshots import definition_from_dict, definition_to_dict
from metaxy_core._spec import FeatureSpec, FieldDep, FieldSpec, key_of

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
            validate_deps(self._defs, definition)
        self._order = self._toposort()
        for key in self._order:  # upstreams first: inherited types flow down the graph
            self._defs[key] = with_upstream_id_types(self._defs, self._defs[key])
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
        return upstream_columns(self._defs, self.spec(feature))

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
