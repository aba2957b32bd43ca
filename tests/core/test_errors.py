"""One error root: whatever goes wrong behind the public API leaves as a `MetaxyError`."""

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core._guard import guard_public_methods, store_error
from tests.core.video import graph, inputs

HOSTILE = [None, 5, 3.5, "", "nope", "a\n", [], [None], [5], {}, {"a": 1}, ("a", "b"), object()]


def _stable_id(value: object) -> str:
    """repr, but the same in every process (parallel workers must collect the same ids)."""
    return "object()" if type(value) is object else repr(value)


@pytest.mark.parametrize("value", HOSTILE, ids=_stable_id)
def test_hostile_arguments_to_specs_and_graphs_raise_metaxy_errors(value):
    g = graph()
    calls = {
        "FeatureSpec(key)": lambda: mx.FeatureSpec(value, id_columns=["id"]),
        "FeatureSpec(id_columns)": lambda: mx.FeatureSpec("k", id_columns=value),
        "FeatureSpec(fields)": lambda: mx.FeatureSpec("k", id_columns=["id"], fields=value),
        "FeatureSpec(deps)": lambda: mx.FeatureSpec("k", id_columns=["id"], deps=value),
        "FeatureSpec(tags)": lambda: mx.FeatureSpec("k", id_columns=["id"], tags=value),
        "FeatureSpec(metadata)": lambda: mx.FeatureSpec("k", id_columns=["id"], metadata=value),
        "FieldSpec(key)": lambda: mx.FieldSpec(value),
        "FieldSpec(code_version)": lambda: mx.FieldSpec("a", code_version=value),
        "FieldSpec(deps)": lambda: mx.FieldSpec("a", deps=value),
        "FieldDep(fields)": lambda: mx.FieldDep("a", value),
        "FeatureDep(rename)": lambda: mx.FeatureDep("a", rename=value),
        "FeatureDep(select)": lambda: mx.FeatureDep("a", select=value),
        "FeatureDep(filters)": lambda: mx.FeatureDep("a", filters=value),
        "FeatureDep(lineage)": lambda: mx.FeatureDep("a", lineage=value),
        "Lineage.aggregation": lambda: mx.Lineage.aggregation(on=value),
        "FeatureGraph": lambda: mx.FeatureGraph(value),
        "FeatureGraph([x])": lambda: mx.FeatureGraph([value]),
        "graph.spec": lambda: g.spec(value),
        "graph.replace": lambda: g.replace(value),
        "graph.downstream": lambda: g.downstream(value),
        "FeatureGraph.from_snapshot": lambda: mx.FeatureGraph.from_snapshot(value),
        "HashSettings": lambda: mx.HashSettings(value),
        "HashSettings(length)": lambda: mx.HashSettings("md5", length=value),
        "HashSettings.parse": lambda: mx.HashSettings.parse(value),
        "stamp_children": lambda: mx.stamp_children(value, pl.DataFrame({"a": [1]}), on=["a"]),
        "spec.with_field": lambda: g.spec("crop").with_field(value),
        "spec.replace": lambda: g.spec("crop").replace(id_columns=value),
        "FeatureDefinition(columns)": lambda: mx.FeatureDefinition(g.spec("video"), value),
        "feature_version": lambda: mx.feature_version(value, "video"),
        "project_version": lambda: mx.project_version(value),
        "columns.is_system": lambda: mx.columns.is_system(value),
    }
    for name, call in calls.items():
        try:
            call()
        except mx.MetaxyError:
            continue
        except BaseException as exc:
            pytest.fail(f"{name} with {value!r} raised {type(exc).__name__}: {exc}")


def test_unreadable_snapshots_are_spec_errors():
    for text in ("{", "{}", '{"features": [{"key": "a"}]}'):
        with pytest.raises(mx.SpecError, match="from_snapshot"):
            mx.FeatureGraph.from_snapshot(text)


@pytest.fixture(params=["memory", "duckdb", "delta"])
def written_store(request, tmp_path):
    make = {
        "memory": lambda: mx.MemoryStore(graph()),
        "duckdb": lambda: mx.DuckDBStore(tmp_path / "m.duckdb", graph()),
        "delta": lambda: mx.DeltaStore(tmp_path / "delta", graph()),
    }[request.param]
    with make() as store:
        rows = store.resolve_update("video", samples=inputs(3)).new
        store.write("video", rows.with_columns(path=pl.lit("v.mp4")))
        yield store


@pytest.mark.parametrize("value", HOSTILE, ids=_stable_id)
def test_hostile_arguments_to_stores_raise_metaxy_errors_and_write_nothing(written_store, value):
    store = written_store
    before = store.history("video")
    calls = {
        "read(feature)": lambda: store.read(value),
        "read(columns)": lambda: store.read("video", columns=value),
        "read(filters)": lambda: store.read("video", filters=value),
        "resolve_update(samples)": lambda: store.resolve_update("video", samples=value),
        "resolve_update(filters)": lambda: store.resolve_update("crop", filters=value),
        "write(rows)": lambda: store.write("video", value),
        "write(crop rows)": lambda: store.write("crop", value),
        "delete(ids)": lambda: store.delete("video", value),
        "history": lambda: store.history(value),
        "write_batch(ids)": lambda: store.write_batch("b", "video", value, kind="new"),
        "copy_to": lambda: store.copy_to(value),
        "graph =": lambda: setattr(store, "graph", value),
    }
    if value is not None and not isinstance(value, str):  # any text is a valid run id
        calls["write(materialization_id)"] = lambda: store.write(
            "video", store.read("video"), materialization_id=value
        )
    for name, call in calls.items():
        try:
            call()
        except mx.MetaxyError:
            continue
        except BaseException as exc:
            pytest.fail(f"{name} with {value!r} raised {type(exc).__name__}: {exc}")
    after = store.history("video").select("sample_id", mx.columns.WRITE_ID)
    assert after.equals(before.select("sample_id", mx.columns.WRITE_ID))


def test_a_store_that_cannot_open_names_its_file(tmp_path):
    garbage = tmp_path / "garbage.duckdb"
    garbage.write_text("not a database")
    with pytest.raises(mx.StoreError, match=r"garbage\.duckdb") as info:
        mx.DuckDBStore(garbage, graph())
    assert info.value.__cause__ is not None


class PanicException(BaseException):
    """Stands in for pyo3's panic type, which has no importable home (matched by name)."""


class _Backend:
    path = "/data/meta"

    def read(self, feature):
        raise ValueError("engine says no")

    def scan(self, feature):
        raise PanicException("called `Option::unwrap()` on a `None` value")

    def interrupt(self, feature):
        raise KeyboardInterrupt


guard_public_methods(_Backend, store_error)


def test_the_guard_names_store_method_and_feature_and_keeps_the_cause():
    with pytest.raises(
        mx.StoreError, match=r"_Backend\('/data/meta'\): read\(\) on feature video"
    ) as info:
        _Backend().read("video")
    assert isinstance(info.value.__cause__, ValueError)


def test_the_guard_turns_panics_into_store_errors_but_lets_interrupts_through():
    with pytest.raises(mx.StoreError, match="PanicException: called `Option::unwrap") as info:
        _Backend().scan("video")
    assert isinstance(info.value.__cause__, PanicException)
    with pytest.raises(KeyboardInterrupt):
        _Backend().interrupt("video")


def test_assigning_a_graph_to_a_closed_store_is_a_store_error(tmp_path):
    store = mx.DuckDBStore(tmp_path / "m.duckdb", graph())
    store.close()
    with pytest.raises(mx.StoreError, match=r"m\.duckdb"):
        store.graph = graph()
