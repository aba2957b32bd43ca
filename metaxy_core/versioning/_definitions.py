"""Definition versions: pure functions of the frozen specs in a graph."""

from typing import Any

from metaxy_core._graph import FeatureGraph
from metaxy_core._guard import guarded_function
from metaxy_core.versioning._hashing import definition_hash


@guarded_function
def field_version(graph: FeatureGraph, feature: Any, field: str) -> str:
    """hash(feature key, field key, code version, versions of the parent fields).

    Args:
        graph: the feature graph.
        feature: the feature key, spec or class.
        field: the field key.

    Returns:
        The field version, a hash string.

    Raises:
        UnknownFeatureError: the feature is not in the graph.

    Example:
        >>> from metaxy_core import FeatureSpec
        >>> g = FeatureGraph([FeatureSpec("video", id_columns=["id"], fields=["audio"])])
        >>> len(field_version(g, "video", "audio"))
        16
    """
    spec = graph.spec(feature)
    parents = [
        f"{up.path}:{g}={field_version(graph, up, g)}"
        for up, g in graph.field_parents(spec.key, field)
    ]
    return definition_hash(spec.key.path, field, spec.field(field).code_version, *parents)


@guarded_function
def feature_version(graph: FeatureGraph, feature: Any) -> str:
    """Hash of the feature's field versions (changes when any upstream field's code does).

    Args:
        graph: the feature graph.
        feature: the feature key, spec or class.

    Returns:
        The feature version, a hash string.

    Raises:
        UnknownFeatureError: the feature is not in the graph.

    Example:
        >>> from metaxy_core import FeatureSpec
        >>> g = FeatureGraph([FeatureSpec("video", id_columns=["id"], fields=["audio"])])
        >>> len(feature_version(g, "video"))
        16
    """
    spec = graph.spec(feature)
    return definition_hash(
        *(f"{f}={field_version(graph, spec.key, f)}" for f in sorted(spec.field_keys))
    )


@guarded_function
def feature_code_version(graph: FeatureGraph, feature: Any) -> str:
    """Hash of the feature's own definition: its key and field code versions only.

    Args:
        graph: the feature graph.
        feature: the feature key, spec or class.

    Returns:
        The feature's code version, a hash string (upstream changes do not move it).

    Raises:
        UnknownFeatureError: the feature is not in the graph.

    Example:
        >>> from metaxy_core import FeatureSpec
        >>> g = FeatureGraph([FeatureSpec("video", id_columns=["id"], fields=["audio"])])
        >>> len(feature_code_version(g, "video"))
        16
    """
    spec = graph.spec(feature)
    return definition_hash(
        spec.key.path,
        *(f"{f.key}={f.code_version}" for f in sorted(spec.fields, key=lambda f: f.key)),
    )


@guarded_function
def project_version(graph: FeatureGraph) -> str:
    """Hash of every feature version in the graph.

    Args:
        graph: the feature graph.

    Returns:
        The project version, a hash string.

    Example:
        >>> from metaxy_core import FeatureSpec
        >>> g = FeatureGraph([FeatureSpec("video", id_columns=["id"], fields=["audio"])])
        >>> len(project_version(g))
        16
    """
    return definition_hash(*(f"{k.path}={feature_version(graph, k)}" for k in sorted(graph.keys)))
