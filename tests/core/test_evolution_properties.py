"""Hypothesis: any sequence of everyday graph edits leaves a store that one pass brings up to
date, with exactly the per-field versions a store built from scratch on the final graph has."""

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

import metaxy_core as mx
from metaxy_core import columns as C
from tests.core.test_properties import SAMPLE_IDS, materialize, random_graphs


def edit(graph: mx.FeatureGraph, data: st.DataObject) -> mx.FeatureGraph:
    """One random everyday edit of one feature (add/remove a field, change deps, bump code)."""
    key = data.draw(st.sampled_from([k.path for k in graph.keys]))
    spec = graph.spec(key)
    kinds = [
        "add",
        "bump",
        *(["remove"] if len(spec.fields) > 1 else []),
        *(["deps"] if spec.deps else []),
    ]
    kind = data.draw(st.sampled_from(kinds))
    if kind == "add":
        name = data.draw(st.sampled_from([f for f in "abcdefg" if f not in spec.field_keys]))
        spec = spec.with_field(name)
    elif kind == "remove":
        spec = spec.without_field(data.draw(st.sampled_from(spec.field_keys)))
    elif kind == "bump":
        field = data.draw(st.sampled_from(spec.field_keys))
        spec = spec.with_field_code_version(field, int(spec.field(field).code_version) + 1)
    else:
        field = data.draw(st.sampled_from(spec.field_keys))
        up = graph.spec(data.draw(st.sampled_from([d.feature.path for d in spec.deps])))
        chosen = data.draw(
            st.none() | st.lists(st.sampled_from(up.field_keys), min_size=1, unique=True)
        )
        spec = spec.with_field_deps(field, None if chosen is None else {up.key: chosen})
    try:
        return graph.replace(spec)
    except mx.GraphError:  # e.g. a removed field another feature names explicitly
        return graph


def root_samples(graph: mx.FeatureGraph) -> pl.DataFrame:
    fields = graph.spec("f0").field_keys
    return pl.DataFrame({"sample_id": SAMPLE_IDS[:4], **{f: [f"in-{f}"] * 4 for f in fields}})


def field_versions(store: mx.MetadataStore) -> dict[str, pl.DataFrame]:
    """Per feature: ids with the per-field provenance and data versions of the current fields."""
    out = {}
    for key in store.graph.keys:
        fields = store.graph.spec(key).field_keys
        columns = [c for f in fields for c in (C.provenance_column(f), C.data_version_column(f))]
        out[key.path] = store.read(key, columns=columns).sort("sample_id")
    return out


@settings(max_examples=25, deadline=None)
@given(graph=random_graphs(), data=st.data())
def test_edited_graphs_converge_to_a_fresh_build(graph, data):
    store = mx.MemoryStore(graph)
    materialize(store, root_samples(graph))
    for _ in range(data.draw(st.integers(1, 3))):
        graph = edit(graph, data)
        store.graph = graph  # never refused: no id or column type changes here
        materialize(store, root_samples(graph))
    again = materialize(store, root_samples(graph))
    assert all(inc.is_empty for inc in again.values()), {k: i.describe() for k, i in again.items()}
    fresh = mx.MemoryStore(graph)
    materialize(fresh, root_samples(graph))
    mine, theirs = field_versions(store), field_versions(fresh)
    for key, frame in theirs.items():
        assert mine[key].equals(frame), key


@settings(max_examples=25, deadline=None)
@given(graph=random_graphs(), data=st.data())
def test_adding_a_field_moves_nothing_downstream_until_its_feature_is_rewritten(graph, data):
    store = mx.MemoryStore(graph)
    materialize(store, root_samples(graph))
    key = data.draw(st.sampled_from([k.path for k in graph.keys if not graph.spec(k).is_root]))
    spec = graph.spec(key)
    name = data.draw(st.sampled_from([f for f in "defg" if f not in spec.field_keys]))
    store.graph = graph.replace(spec.with_field(name))
    for down in store.graph.downstream([key], include_self=False):
        assert store.resolve_update(down).is_empty, down
    inc = store.resolve_update(key)
    assert inc.stale_fields() == {name: {"code": 4}} and inc.new.is_empty()
