"""The feature graph as a terminal tree, Mermaid or Graphviz DOT, feature- or field-level."""

from collections.abc import Mapping
from typing import Any

from rich.tree import Tree

from metaxy_core._graph import FeatureGraph
from metaxy_core._keys import FeatureKey
from metaxy_core.versioning import feature_version


def graph_dict(graph: FeatureGraph, stats: Mapping[FeatureKey, dict[str, Any]]) -> dict[str, Any]:
    """The graph as JSON-ready data (with per-feature `stats` where given)."""
    features: list[dict[str, Any]] = []
    for key in graph.keys:
        spec = graph.spec(key)
        item: dict[str, Any] = {
            "key": key.path,
            "version": feature_version(graph, key),
            "id_columns": list(spec.id_columns),
            "deps": [
                {"feature": d.feature.path, "lineage": d.lineage.kind, "optional": d.optional}
                for d in spec.deps
            ],
            "fields": [
                {
                    "key": f.key,
                    "code_version": f.code_version,
                    "parents": [f"{u.path}.{g}" for u, g in graph.field_parents(key, f.key)],
                }
                for f in spec.fields
            ],
        }
        if key in stats:
            item["stats"] = stats[key]
        features.append(item)
    return {"project_version": graph.project_version, "features": features}


def tree(graph: FeatureGraph, *, fields: bool, stats: Mapping[FeatureKey, dict[str, Any]]) -> Tree:
    """Roots at the top, each feature under each of its upstreams (repeats marked)."""
    top = Tree(f"feature graph {graph.project_version}", guide_style="dim")
    shown: set[FeatureKey] = set()
    children: dict[FeatureKey, list[FeatureKey]] = {k: [] for k in graph.keys}
    for key in graph.keys:
        for dep in graph.spec(key).deps:
            children[dep.feature].append(key)

    def add(parent: Tree, key: FeatureKey) -> None:
        if key in shown:
            parent.add(f"{key} (see above)")
            return
        shown.add(key)
        node = parent.add(_label(graph, key, fields=fields, stats=stats.get(key)))
        if fields:
            for f in graph.spec(key).fields:
                parents = graph.field_parents(key, f.key)
                reads = ", ".join(f"{u}.{g}" for u, g in parents) if parents else "input"
                node.add(f"{f.key} v{f.code_version} <- {reads}")
        for child in children[key]:
            add(node, child)

    for key in graph.keys:
        if graph.spec(key).is_root:
            add(top, key)
    return top


def _label(
    graph: FeatureGraph, key: FeatureKey, *, fields: bool, stats: Mapping[str, Any] | None
) -> str:
    spec = graph.spec(key)
    text = key.path
    if not fields:
        text += f" ({', '.join(spec.field_keys)})"
    lineage = [
        f"{d.lineage.kind} on {d.feature}" for d in spec.deps if d.lineage.kind != "identity"
    ]
    if lineage:
        text += f" [{'; '.join(lineage)}]"
    if stats is not None:
        last = stats.get("last_write") or "never"
        text += f"  {stats['live']} live, {stats['pending']} pending, last write {last}"
    return text


def mermaid(graph: FeatureGraph, *, fields: bool) -> str:
    """A Mermaid flowchart (`graph LR`)."""
    lines = ["graph LR"]
    for key in graph.keys:
        spec = graph.spec(key)
        if fields:
            lines.append(f'  subgraph {_node(key)}["{key}"]')
            lines += [f'    {_node(key, f)}["{f}"]' for f in spec.field_keys]
            lines.append("  end")
        else:
            lines.append(f'  {_node(key)}["{key}"]')
    lines += [f"  {a} --> {b}" for a, b in _edges(graph, fields=fields)]
    return "\n".join(lines)


def dot(graph: FeatureGraph, *, fields: bool) -> str:
    """A Graphviz digraph."""
    lines = ["digraph metaxy {", "  rankdir=LR;", "  node [shape=box];"]
    for key in graph.keys:
        spec = graph.spec(key)
        if fields:
            lines.append(f'  subgraph "cluster_{key}" {{ label="{key}";')
            lines += [f'    {_node(key, f)} [label="{f}"];' for f in spec.field_keys]
            lines.append("  }")
        else:
            lines.append(f'  {_node(key)} [label="{key}"];')
    lines += [f"  {a} -> {b};" for a, b in _edges(graph, fields=fields)]
    lines.append("}")
    return "\n".join(lines)


def _edges(graph: FeatureGraph, *, fields: bool) -> list[tuple[str, str]]:
    edges: list[tuple[str, str]] = []
    for key in graph.keys:
        spec = graph.spec(key)
        if not fields:
            edges += [(_node(d.feature), _node(key)) for d in spec.deps]
            continue
        for f in spec.field_keys:
            edges += [(_node(u, g), _node(key, f)) for u, g in graph.field_parents(key, f)]
    return edges


def _node(key: FeatureKey, field: str | None = None) -> str:
    """An identifier both formats accept (keys hold '/', '-' and '.')."""
    name = key.table_name if field is None else f"{key.table_name}__f__{field}"
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)
