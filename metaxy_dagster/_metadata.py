"""What Dagster shows about a feature: keys, tags, column schema and lineage, fields, versions."""

import hashlib
import re
from typing import Any

import dagster as dg
import polars as pl

import metaxy_core as mx
from metaxy_core import columns as C

_TAG_VALUE = re.compile(r"[^A-Za-z0-9_.\-]")
_TAG_MAX = 63
PREVIEW_ROWS = 5


def feature_asset_key(feature: Any) -> dg.AssetKey:
    """The Dagster asset key of a feature: its key parts.

    Args:
        feature: the feature key, spec or class.

    Returns:
        The asset key, one part per feature key part.

    Example:
        >>> feature_asset_key("video/crop")
        AssetKey(['video', 'crop'])
    """
    spec = getattr(feature, "spec", None)
    key = spec.key if isinstance(spec, mx.FeatureSpec) else getattr(feature, "key", feature)
    return dg.AssetKey(list(mx.FeatureKey.of(key).parts))


def source_asset_key(feature: Any) -> dg.AssetKey:
    """The key of the observable source asset upstream of a root feature (`<key>_source`)."""
    parts = feature_asset_key(feature).path
    return dg.AssetKey([*parts[:-1], f"{parts[-1]}_source"])


def tag_value(text: str) -> str:
    """A valid Dagster tag value: at most 63 characters of letters, digits, `_`, `-` and `.`."""
    return _TAG_VALUE.sub("_", str(text))[:_TAG_MAX]


def feature_tags(spec: mx.FeatureSpec) -> dict[str, str]:
    """The spec's tags made tag-safe, plus `metaxy/feature` and `metaxy/root`."""
    tags = {k: tag_value(v) for k, v in spec.tags}
    tags["metaxy/feature"] = tag_value(spec.key.table_name)
    tags["metaxy/root"] = "true" if spec.is_root else "false"
    return tags


def _system_columns(spec: mx.FeatureSpec) -> list[tuple[str, str, str]]:
    per_field = [
        (f"{name}{f}", "string", f"{what} of field {f!r}")
        for name, what in (
            ("metaxy_provenance__", "Provenance hash"),
            ("metaxy_data_version__", "Data version"),
            ("metaxy_code_version__", "Code version"),
        )
        for f in spec.field_keys
    ]
    return [
        (C.PROVENANCE, "string", "Hash of the sorted per-field provenance values"),
        (C.DATA_VERSION, "string", "Hash of the sorted per-field data versions"),
        *per_field,
        (C.FEATURE_VERSION, "string", "Feature version the row was written with"),
        (C.PROJECT_VERSION, "string", "Project version the row was written with"),
        (C.CREATED_AT, "datetime", "When the sample was first written"),
        (C.UPDATED_AT, "datetime", "When this row was written"),
        (C.DELETED_AT, "datetime", "Set on soft-delete marker rows"),
        (C.MATERIALIZATION_ID, "string", "Dagster run id that wrote the row"),
        (C.WRITE_ID, "string", "Sortable id of the write; the latest row per sample wins"),
    ]


def column_schema(graph: mx.FeatureGraph, feature: Any) -> dg.TableSchema:
    """Id columns, user columns (with pydantic descriptions) and system columns."""
    definition = graph.definition(feature)
    spec = definition.spec
    model_fields = definition.feature_class.model_fields if definition.feature_class else {}
    columns = []
    for name, dtype in definition.columns.items():
        is_id = name in spec.id_columns
        info = model_fields.get(name)
        description = (info.description if info is not None else None) or (
            "Id column" if is_id else None
        )
        constraints = dg.TableColumnConstraints(nullable=False, unique=False) if is_id else None
        columns.append(
            dg.TableColumn(name, str(dtype), description=description, constraints=constraints)
        )
    columns += [dg.TableColumn(n, t, description=d) for n, t, d in _system_columns(spec)]
    return dg.TableSchema(columns=columns)


def column_lineage(graph: mx.FeatureGraph, feature: Any) -> dg.TableColumnLineage:
    """Upstream columns behind each column of the feature's table.

    Covers pass-through and renamed columns, id columns by lineage, and per-field
    provenance from the parent fields' data versions.
    """
    definition = graph.definition(feature)
    spec = definition.spec
    deps: dict[str, list[dg.TableColumnDep]] = {}

    def add(column: str, upstream: mx.FeatureKey, up_column: str) -> None:
        dep = dg.TableColumnDep(asset_key=feature_asset_key(upstream), column_name=up_column)
        deps.setdefault(column, []).append(dep)

    carried = graph.upstream_columns(spec.key)
    for dep in spec.deps:
        rename = dep.rename_map
        for up_id in graph.spec(dep.feature).id_columns:
            seen = rename.get(up_id, up_id)
            if seen in spec.id_columns or seen in dep.lineage.on:
                add(seen, dep.feature, up_id)
        for up_column, seen in carried[dep.feature].items():
            if seen in definition.columns and seen not in spec.id_columns:
                add(seen, dep.feature, up_column)
    for f in spec.field_keys:
        for upstream, g in graph.field_parents(spec.key, f):
            add(C.provenance_column(f), upstream, C.data_version_column(g))
    return dg.TableColumnLineage(deps_by_column=deps)


def field_table(graph: mx.FeatureGraph, feature: Any) -> dg.TableMetadataValue:
    """One row per field: code version, definition version and the parent fields it reads."""
    spec = graph.spec(feature)
    records = [
        dg.TableRecord(
            {
                "field": f.key,
                "code_version": f.code_version,
                "field_version": mx.field_version(graph, spec.key, f.key),
                "reads": ", ".join(f"{u.path}.{g}" for u, g in graph.field_parents(spec.key, f.key))
                or "(root input)",
                "description": f.description or "",
            }
        )
        for f in spec.fields
    ]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(n)
            for n in ("field", "code_version", "field_version", "reads", "description")
        ]
    )
    return dg.MetadataValue.table(records, schema=schema)


def definition_metadata(graph: mx.FeatureGraph, feature: Any) -> dict[str, Any]:
    """Static asset metadata: schema, lineage, fields, versions and the spec's own metadata."""
    spec = graph.spec(feature)
    metadata: dict[str, Any] = {k: v for k, v in spec.metadata}
    metadata |= {
        "dagster/column_schema": column_schema(graph, spec.key),
        "dagster/column_lineage": column_lineage(graph, spec.key),
        "metaxy/fields": field_table(graph, spec.key),
        "metaxy/feature_key": spec.key.path,
        "metaxy/id_columns": ", ".join(spec.id_columns),
        "metaxy/feature_version": mx.feature_version(graph, spec.key),
    }
    return metadata


def content_version(frame: pl.DataFrame, id_columns: list[str]) -> str:
    """A data version of live rows (ids and `metaxy_data_version`), independent of row order."""
    ordered = frame.select(*id_columns, C.DATA_VERSION).sort(id_columns)
    digest = hashlib.sha256(ordered.write_csv(include_header=False).encode())
    return digest.hexdigest()[:24]


def preview(frame: pl.DataFrame) -> dg.MetadataValue:
    """The first rows (user columns only) as markdown."""
    shown = frame.select([c for c in frame.columns if not C.is_system(c)]).head(PREVIEW_ROWS)
    if shown.width == 0 or shown.height == 0:
        return dg.MetadataValue.md("(no rows)")
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * shown.width + "\n"
    body = "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in shown.iter_rows())
    return dg.MetadataValue.md(header + body)
