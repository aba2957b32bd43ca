"""Sample provenance: what each sample's versions should be now, built on the store's engine.

Every hash input is a fixed head followed by labelled parts, and is unambiguous because
each variable part either cannot hold the text that ends it or says where it ends:

- field provenance: H, then for each parent field (sorted) with a data version,
  `|<upstream path>/<field>=<data version>`. H is the 16 hex characters of
  `definition_hash("field provenance", feature path, field, code version)`, computed once
  in Python, so a code version (any text) cannot pass for a parent. Paths and field names
  never hold `|`, `=` or `@` (`_keys`), and a stored data version never holds `|`
  (`PART_END`, applied when rows are written), so every part ends at the next `|`. A null
  parent (an optional dep without a row, an upstream row written before the field was
  added) is left out, so adding a field upstream moves nothing until the upstream is
  rewritten with it.
- aggregation: the parent part is `|<upstream path>/<field>@<members>`. A group's members
  hold id text (any text), so each member is framed, F(x) = `<UTF-8 byte length>:<x>`:
  F(id text)... F(data version), sorted and joined with ','. Framed members say where they
  end, so the part ends after the last one. Members with a null data version are left out;
  a group left with none is null.
- root field provenance: H, then `=<input text>` unless the input is null. H has a fixed
  length, so the input is the rest of the text whatever it holds.
- sample provenance and sample data version: `|<field>=<value>` for each field, sorted;
  the values are hashes or stored data versions, so they never hold `|`.

Id values and root inputs enter as their canonical text (`metaxy_core._canonical`). The
engines build these inputs (`Engine.compose`); this module says what goes in them.
"""

from collections.abc import Callable, Mapping
from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._filters import parse_filters
from metaxy_core._graph import FeatureGraph
from metaxy_core._keys import FeatureKey
from metaxy_core._spec import FeatureDep, FieldSpec
from metaxy_core.versioning._engine import Composition, Engine, apply_filters
from metaxy_core.versioning._hashing import HashSettings, definition_hash
from metaxy_core.versioning._polars_engine import PolarsEngine

_ID = "__mx_id__"


def parent_column(upstream: FeatureKey, field: str) -> str:
    """Internal name of an upstream field's data version once joined into a feature's frame."""
    return f"__mx_dv__{upstream.table_name}__{field}"


def input_column(field: str) -> str:
    """Internal name of a root field's input, as canonical text."""
    return f"__mx_input__{field}"


# A stored data version never holds the text that ends a part. A data version written with
# it (an override, or a hand-made root provenance) is stored as the hash of this prefix and
# the text; every other one as written, so rows written back keep their data versions.
PART_END = "|"
OVERRIDE_PREFIX = "override:"


def _field_head(key: FeatureKey, field: FieldSpec) -> str:
    return definition_hash("field provenance", key.path, field.key, field.code_version)


def by_field(fields: list[str], column: Callable[[str], str]) -> Composition:
    """`|<field>=<value>` for each field, sorted: a sample's provenance or data version input."""
    return Composition("", tuple((f"|{f}=", column(f)) for f in sorted(fields)))


def _with_sample_provenance(
    frame: nw.LazyFrame[Any], fields: list[str], engine: Engine, settings: HashSettings
) -> nw.LazyFrame[Any]:
    """Add `metaxy_provenance`: the hash of the sorted per-field provenance values."""
    sample = by_field(fields, C.provenance_column)
    return engine.hash_compositions(frame, {C.PROVENANCE: sample}, settings)


def with_sample_provenance(
    rows: pl.DataFrame, fields: list[str], settings: HashSettings
) -> pl.DataFrame:
    """Collected rows with `metaxy_provenance` added from their per-field provenance.

    The polars engine hashes exactly as every other engine does, so a diff may leave the
    sample provenance out of the whole comparison and add it to the rows it keeps.
    """
    frame = _with_sample_provenance(nw.from_native(rows.lazy()), fields, PolarsEngine(), settings)
    return frame.collect(backend="polars").to_native()


def _hash_fields(
    frame: nw.LazyFrame[Any],
    inputs: Mapping[str, Composition],
    engine: Engine,
    settings: HashSettings,
    *,
    sample: bool = True,
) -> nw.LazyFrame[Any]:
    frame = engine.hash_compositions(
        frame, {C.provenance_column(f): c for f, c in inputs.items()}, settings
    )
    return _with_sample_provenance(frame, list(inputs), engine, settings) if sample else frame


def root_provenance(
    graph: FeatureGraph,
    feature: FeatureKey,
    samples: nw.LazyFrame[Any],
    engine: Engine,
    settings: HashSettings,
) -> nw.LazyFrame[Any]:
    """Provenance of root samples from user-supplied per-field inputs.

    `samples` holds, per field, the input's canonical text (`metaxy_core._canonical`,
    null for no input) in `input_column(field)`; those columns are dropped.
    """
    spec = graph.spec(feature)
    inputs = {
        f.key: Composition(_field_head(spec.key, f), (("=", input_column(f.key)),))
        for f in spec.fields
    }
    out = _hash_fields(samples, inputs, engine, settings)
    return out.drop(*(input_column(f) for f in spec.field_keys))


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
    columns = [parent_column(dep.feature, g) for g in needed_fields]
    return _groups(frame, spec.parent_key, members, columns, engine)


def _groups(
    frame: nw.LazyFrame[Any],
    by: tuple[str, ...],
    members: list[str],
    columns: list[str],
    engine: Engine,
) -> nw.LazyFrame[Any]:
    """Aggregation: one row per group; each data version column lists the group's members."""
    frame = engine.id_text(frame, {_ID + c: c for c in members})
    key = tuple(("", _ID + c) for c in members)
    member = {c: Composition("", (*key, ("", c)), framed=True, all_or_null=True) for c in columns}
    frame = engine.compose(frame, member)
    frame = engine.sorted_concat(frame, by, {c: c for c in columns})
    # A group of nulls only is '' on some engines and null on others; a member is never ''.
    return frame.with_columns(nw.when(nw.col(c) != "").then(nw.col(c)).alias(c) for c in columns)


def expected_provenance(
    graph: FeatureGraph,
    feature: FeatureKey,
    upstreams: Mapping[FeatureKey, nw.LazyFrame[Any]],
    engine: Engine,
    settings: HashSettings,
    *,
    sample: bool = True,
) -> nw.LazyFrame[Any]:
    """What every sample's provenance should be given the upstreams' latest live rows.

    Returns the feature's parent key, the carried upstream columns, one
    `metaxy_provenance__<field>` column per field and (unless `sample` is False: the caller
    adds it to the rows it keeps, see `with_sample_provenance`) `metaxy_provenance`.
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
            how = "left" if dep.optional else "inner"
            joined = engine.join_using(joined, frame, list(spec.parent_key), how=how)
    assert joined is not None, "roots use root_provenance"
    grouped = {d.feature for d in spec.deps if d.lineage.kind == "aggregation"}

    def label(up: FeatureKey, g: str) -> str:
        return f"|{up.path}/{g}{'@' if up in grouped else '='}"

    inputs = {
        f.key: Composition(
            _field_head(spec.key, f),
            tuple((label(up, g), parent_column(up, g)) for up, g in parents[f.key]),
        )
        for f in spec.fields
    }
    out = _hash_fields(joined, inputs, engine, settings, sample=sample)
    dv_columns = [parent_column(u, g) for refs in parents.values() for (u, g) in refs]
    return out.drop(*sorted(set(dv_columns)))
