"""Finding the feature graph: a `module:attribute` target, or the `metaxy.features` entry points.

A target names a `FeatureGraph`, a function returning one, a list of features, or a
module (every `Feature` class defined in it). Installed packages register their
features under the entry point group `metaxy.features`; their graphs are merged into
one, and a key two packages define differently is refused, naming both packages.
"""

import importlib
import importlib.metadata
import inspect
import types
from collections.abc import Iterable
from typing import Any

from metaxy_core._definition import FeatureDefinition
from metaxy_core._errors import ConfigError, MetaxyError
from metaxy_core._graph import FeatureGraph
from metaxy_core._keys import FeatureKey

ENTRY_POINT_GROUP = "metaxy.features"


def graph_from_target(target: str) -> FeatureGraph:
    """The graph a `module:attribute` (or `module`) target names.

    Raises:
        ConfigError: the module cannot be imported, the attribute is missing, or it is
            not a graph, a function returning one, a list of features or a module.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or (":" in target and not attribute):
        raise ConfigError(
            f"Graph target {target!r} is malformed: use 'package.module:attribute' "
            "(a FeatureGraph, a function returning one, or a list of features) or 'package.module'."
        )
    module = _import(module_name, target)
    if not attribute:
        return _as_graph(module, target)
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ConfigError(
                f"Graph target {target!r}: module {module_name!r} has no attribute {attribute!r}."
            )
        value = getattr(value, part)
    return _as_graph(value, target)


def graph_from_entry_points(group: str = ENTRY_POINT_GROUP) -> FeatureGraph:
    """Merge the graphs every installed package registers under the entry point `group`.

    Raises:
        ConfigError: no package registers any, an entry point fails to load, or two
            packages define the same feature key differently (naming both packages).
    """
    found = sorted(importlib.metadata.entry_points(group=group), key=lambda e: (e.value, e.name))
    if not found:
        raise ConfigError(
            f"No feature graph configured and no installed package registers the entry point "
            f"group {group!r}. Set graph = 'package.module:attribute' under [tool.metaxy] in "
            "pyproject.toml (or in metaxy.toml), set METAXY_GRAPH, or pass --graph."
        )
    owners: dict[FeatureKey, tuple[str, FeatureDefinition]] = {}
    for entry in found:
        package = _package_of(entry)
        where = f"{package} ({entry.value})"
        try:
            graph = _as_graph(entry.load(), entry.value)
        except MetaxyError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"Entry point {entry.name!r} of package {where} in group {group!r} failed to "
                f"load: {type(exc).__name__}: {exc}"
            ) from exc
        for key in graph.keys:
            definition = graph.definition(key)
            if key not in owners:
                owners[key] = (where, definition)
                continue
            first, known = owners[key]
            if not _same(known, definition):
                raise ConfigError(
                    f"Feature key {key} is defined by two packages: {first} and {where}, "
                    "differently. Rename one of them, or import the other package's feature "
                    "instead of redefining it."
                )
    return FeatureGraph([definition for _, definition in owners.values()])


def _same(a: FeatureDefinition, b: FeatureDefinition) -> bool:
    """One feature reached through two graphs (e.g. an upstream imported by another team)."""
    return a.spec == b.spec and dict(a.columns) == dict(b.columns)


def _package_of(entry: importlib.metadata.EntryPoint) -> str:
    dist = entry.dist
    return dist.name if dist is not None else "an unknown package"


def _import(module_name: str, target: str) -> types.ModuleType:
    try:
        return importlib.import_module(module_name)
    except MetaxyError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ConfigError(
                f"Graph target {target!r}: no module named {exc.name!r}. Run metaxy from the "
                "directory that holds it, or install its package."
            ) from exc
        raise ConfigError(
            f"Graph target {target!r}: importing {module_name!r} failed: {exc}"
        ) from exc
    except Exception as exc:
        raise ConfigError(
            f"Graph target {target!r}: importing {module_name!r} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _as_graph(value: Any, target: str) -> FeatureGraph:
    """A graph from what a target names (a graph, a function, a list of features, a module)."""
    if isinstance(value, FeatureGraph):
        return value
    if isinstance(value, types.ModuleType):
        graph = FeatureGraph.from_module(value)
        if not len(graph):
            raise ConfigError(f"Graph target {target!r}: module defines no Feature classes.")
        return graph
    if inspect.isfunction(value) or inspect.ismethod(value):
        return _as_graph(value(), target)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return FeatureGraph(list(value))  # pyright: ignore[reportUnknownArgumentType]
    raise ConfigError(
        f"Graph target {target!r} is a {type(value).__name__}; it must name a FeatureGraph, "
        "a function returning one, a list of features, or a module."
    )
