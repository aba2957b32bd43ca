"""Sample provenance as narwhals expressions: what each sample's versions should be now."""

from collections.abc import Mapping
from typing import Any

import narwhals as nw

from metaxy_core import _columns as C
from metaxy_core._filters import parse_filters
from metaxy_core._graph import FeatureGraph
from metaxy_core._keys import FeatureKey
from metaxy_core._spec import FeatureDep
from metaxy_core.versioning._engine import Engine, apply_filters
from metaxy_core.versioning._hashing import HashSettings

_INPUT = "__mx_in__"


def parent_column(upstream: FeatureKey, field: str) -> str:
    """Internal name of an upstream field's data version once joined into a feature's frame."""
    return f"__mx_dv__{upstream.table_name}__{field}"


def _str(column: str) -> nw.Expr:
    return nw.col(column).cast(nw.String).fill_null("")


def _with_sample_provenance(
    frame: nw.LazyFrame[Any], fields: list[str], engine: Engine, settings: HashSettings
) -> nw.LazyFrame[Any]:
    """Add `metaxy_provenance`: the hash of the sorted per-field provenance values."""
    parts: list[nw.Expr] = []
    for i, f in enumerate(sorted(fields)):
        parts += [nw.lit(("|" if i else "") + f + "="), nw.col(C.provenance_column(f))]
    frame = frame.with_columns(nw.concat_str(parts).alias(_INPUT + "sample"))
    return engine.hash(frame, {C.PROVENANCE: _INPUT + "sample"}, settings).drop(_INPUT + "sample")


def _hash_fields(
    frame: nw.LazyFrame[Any], inputs: Mapping[str, nw.Expr], engine: Engine, settings: HashSettings
) -> nw.LazyFrame[Any]:
    frame = frame.with_columns(*(expr.alias(_INPUT + f) for f, expr in inputs.items()))
    frame = engine.hash(frame, {C.provenance_column(f): _INPUT + f for f in inputs}, settings)
    frame = frame.drop(*(_INPUT + f for f in inputs))
    return _with_sample_provenance(frame, list(inputs), engine, settings)


def root_provenance(
    graph: FeatureGraph,
    feature: FeatureKey,
    samples: nw.LazyFrame[Any],
    engine: Engine,
    settings: HashSettings,
) -> nw.LazyFrame[Any]:
    """Provenance of root samples from user-supplied per-field inputs (one column per field)."""
    spec = graph.spec(feature)
    inputs = {
        f.key: nw.concat_str(
            [nw.lit(f"{spec.key.path}/{f.key}@{f.code_version}|input="), _str(f.key)]
        )
        for f in spec.fields
    }
    return _hash_fields(samples, inputs, engine, settings)


def _upstream_frame(
    graph: FeatureGraph,
    feature: FeatureKey,
    dep: FeatureDep,
    frame: nw.LazyFrame[Any],
    needed_fields: list[str],
    engine: Engine,
) -> nw.LazyFrame[Any]:
    """One upstream's rows, renamed, filtered and reduced to the feature's parent key."""
    spec = graph.spec(feature)
    rename = dep.rename_map
    if rename:
        frame = frame.rename(rename)
    where = f"the dep of {feature} on {dep.feature}"
    frame = apply_filters(engine, frame, parse_filters(dep.filters), where=where)  # parsed once
    up_ids = [rename.get(c, c) for c in graph.spec(dep.feature).id_columns]
    dv = [
        nw.col(C.data_version_column(g)).alias(parent_column(dep.feature, g)) for g in needed_fields
    ]
    if dep.lineage.kind != "aggregation":
        carried = graph.upstream_columns(feature)[dep.feature].values()
        return frame.select(*up_ids, *(c for c in carried if c not in spec.parent_key), *dv)
    members = [c for c in up_ids if c not in spec.parent_key]
    frame = frame.select(*spec.parent_key, *members, *dv)
    columns: dict[str, str] = {}
    for g in needed_fields:
        col = parent_column(dep.feature, g)
        key_parts: list[nw.Expr] = []
        for c in members:
            key_parts += [_str(c), nw.lit("\x1f")]
        frame = frame.with_columns(nw.concat_str([*key_parts, nw.lit("="), _str(col)]).alias(col))
        columns[col] = col
    return engine.sorted_concat(frame, spec.parent_key, columns)


def expected_provenance(
    graph: FeatureGraph,
    feature: FeatureKey,
    upstreams: Mapping[FeatureKey, nw.LazyFrame[Any]],
    engine: Engine,
    settings: HashSettings,
) -> nw.LazyFrame[Any]:
    """What every sample's provenance should be given the upstreams' latest live rows.

    Returns the feature's parent key, the carried upstream columns, one
    `metaxy_provenance__<field>` column per field and `metaxy_provenance`.
    """
    spec = graph.spec(feature)
    parents = {f: graph.field_parents(feature, f) for f in spec.field_keys}
    joined: nw.LazyFrame[Any] | None = None
    for dep in sorted(spec.deps, key=lambda d: (d.optional, d.feature)):
        needed = sorted({g for refs in parents.values() for (u, g) in refs if u == dep.feature})
        frame = _upstream_frame(graph, feature, dep, upstreams[dep.feature], needed, engine)
        if joined is None:
            joined = frame
        else:
            joined = joined.join(
                frame, on=list(spec.parent_key), how="left" if dep.optional else "inner"
            )
    assert joined is not None, "roots use root_provenance"
    inputs: dict[str, nw.Expr] = {}
    for f in spec.fields:
        parts: list[nw.Expr] = [nw.lit(f"{spec.key.path}/{f.key}@{f.code_version}")]
        for up, g in parents[f.key]:
            parts += [nw.lit(f"|{up.path}/{g}="), _str(parent_column(up, g))]
        inputs[f.key] = nw.concat_str(parts)
    out = _hash_fields(joined, inputs, engine, settings)
    dv_columns = [parent_column(u, g) for refs in parents.values() for (u, g) in refs]
    return out.drop(*sorted(set(dv_columns)))


def data_version_expr(fields: list[str]) -> nw.Expr:
    """The input string of the sample data version: sorted per-field data versions."""
    parts: list[nw.Expr] = []
    for i, f in enumerate(sorted(fields)):
        parts += [nw.lit(("|" if i else "") + f + "="), nw.col(C.data_version_column(f))]
    return nw.concat_str(parts)
