"""Graph evolution on every store: each everyday edit either works or is refused by name.

Part of the store conformance pack: `StoreContract` inherits these tests, so every store
module runs them through its own `store_factory` fixture.
"""

import polars as pl
import pytest

import metaxy_core as mx


def chain(b_fields=("x",), *, y_reads=None) -> mx.FeatureGraph:
    """a{x} -> b{b_fields} -> c{y}; `y` reads all of b's fields unless `y_reads` names some."""
    a = mx.FeatureSpec("a", id_columns=["id"], fields=["x"])
    b = mx.FeatureSpec("b", id_columns=["id"], fields=list(b_fields), deps=["a"])
    c = mx.FeatureSpec(
        "c", id_columns=["id"], fields=[mx.FieldSpec("y", deps={"b": y_reads})], deps=["b"]
    )
    return mx.FeatureGraph([a, b, c])


def samples(n: int = 3, *, version: str = "v1") -> pl.DataFrame:
    return pl.DataFrame(
        {"id": [f"s{i}" for i in range(n)], "x": [f"{version}-{i}" for i in range(n)]}
    )


def run(store: mx.MetadataStore, *features: str, root_samples=None) -> dict[str, mx.Increment]:
    """Resolve and write each feature in order (roots from `root_samples`)."""
    done = {}
    for key in features:
        is_root = store.graph.spec(key).is_root
        inc = store.resolve_update(key, samples=root_samples if is_root else None)
        if inc.to_compute().height:
            store.write(key, inc.to_compute())
        done[key] = inc
    return done


class Shop(mx.Feature, spec=mx.FeatureSpec("shop", id_columns=["id"], fields=["data"])):
    score: int


class ShopRetyped(mx.Feature, spec=mx.FeatureSpec("shop", id_columns=["id"], fields=["data"])):
    score: str


class ShopRekeyed(
    mx.Feature, spec=mx.FeatureSpec("shop", id_columns=["id", "region"], fields=["data"])
):
    score: int
    region: str


class ShopWithNotes(mx.Feature, spec=mx.FeatureSpec("shop", id_columns=["id"], fields=["data"])):
    score: int
    notes: str | None = None


def write_shop(store: mx.MetadataStore, n: int = 2) -> None:
    rows = store.resolve_update(
        "shop", samples=pl.DataFrame({"id": [f"s{i}" for i in range(n)], "data": ["d"] * n})
    ).new
    store.write("shop", rows.with_columns(score=pl.lit(1)))


class EvolutionContract:
    """Schema and graph evolution; subclasses supply `store_factory` (see StoreContract)."""

    def test_adding_a_field_upstream_waits_for_the_upstream_rewrite(self, store_factory):
        with store_factory(chain(["x"])) as store:
            run(store, "a", "b", "c", root_samples=samples())
            store.graph = chain(["x", "z"])
            # b has no data for z yet: c, which reads all of b, has nothing to do.
            assert store.resolve_update("c").is_empty
            b = store.resolve_update("b")
            assert b.stale_fields() == {"z": {"code": 3}}
            store.write("b", b.to_compute())
            c = store.resolve_update("c")
            assert c.stale_fields() == {"y": {"upstream": 3}} and c.new.is_empty()

    def test_removing_a_field_upstream_stales_only_its_readers(self, store_factory):
        graph = mx.FeatureGraph(
            [
                mx.FeatureSpec("a", id_columns=["id"], fields=["x"]),
                mx.FeatureSpec("b", id_columns=["id"], fields=["x", "z"], deps=["a"]),
                mx.FeatureSpec(
                    "c",
                    id_columns=["id"],
                    fields=[mx.FieldSpec("y", deps={"b": ["x"]})],
                    deps=["b"],
                ),
                mx.FeatureSpec(
                    "d", id_columns=["id"], fields=[mx.FieldSpec("w", deps={"b": None})], deps=["b"]
                ),
            ]
        )
        with store_factory(graph) as store:
            run(store, "a", "b", "c", "d", root_samples=samples())
            store.graph = graph.replace(graph.spec("b").without_field("z"))
            assert store.resolve_update("b").is_empty  # x did not move
            assert store.resolve_update("c").is_empty  # c reads b.x only
            d = store.resolve_update("d")  # d read b.x and b.z: its inputs changed
            assert d.stale_fields() == {"w": {"upstream": 3}}
            store.write("d", d.to_compute())
            assert store.resolve_update("d").is_empty
            assert store.read("b").height == 3

    def test_renaming_a_root_field_is_a_new_field_to_compute(self, store_factory):
        with store_factory(chain(["x"])) as store:
            run(store, "a", "b", "c", root_samples=samples())
            renamed = mx.FeatureSpec("a", id_columns=["id"], fields=["w"])
            store.graph = store.graph.replace(renamed)
            a = store.resolve_update("a", samples=samples().rename({"x": "w"}))
            assert a.stale_fields() == {"w": {"code": 3}} and a.new.is_empty()
            store.write("a", a.to_compute())
            assert run(store, "b", "c")["b"].stale_fields() == {"x": {"upstream": 3}}
            assert store.resolve_update("c").is_empty

    def test_changing_a_fields_deps_stales_it_with_reason_upstream(self, store_factory):
        with store_factory(chain(["x", "z"], y_reads=["x"])) as store:
            run(store, "a", "b", "c", root_samples=samples())
            store.graph = chain(["x", "z"], y_reads=["z"])
            assert store.resolve_update("c").stale_fields() == {"y": {"upstream": 3}}
            assert store.resolve_update("b").is_empty

    def test_adding_a_column_reads_null_for_older_rows(self, store_factory):
        with store_factory(mx.FeatureGraph([Shop])) as store:
            write_shop(store)
        with store_factory(mx.FeatureGraph([ShopWithNotes])) as store:
            assert store.graph_changes.describe() == "shop: column added 'notes'"
            assert store.read("shop")["notes"].to_list() == [None, None]
            assert store.read("shop", columns=["notes"]).columns == ["id", "notes"]
            rows = store.read("shop").head(1).with_columns(notes=pl.lit("checked"))
            store.write("shop", rows)
            assert store.read("shop")["notes"].to_list() == ["checked", None]

    def test_retyping_a_written_column_is_refused_at_open_and_assignment(self, store_factory):
        with store_factory(mx.FeatureGraph([Shop])) as store:
            write_shop(store)
            with pytest.raises(
                mx.GraphError, match=r"shop.*'score' is stored as Int64 but declared String"
            ):
                store.graph = mx.FeatureGraph([ShopRetyped])
            assert store.graph.definition("shop").columns["score"] == pl.Int64
        with pytest.raises(mx.GraphError, match=r"shop.*'score'.*add a new column"):
            store_factory(mx.FeatureGraph([ShopRetyped]))

    def test_changing_id_columns_of_a_written_feature_is_refused(self, store_factory):
        with store_factory(mx.FeatureGraph([Shop])) as store:
            write_shop(store)
            with pytest.raises(
                mx.GraphError, match=r"shop: id columns changed from \['id'\] to \['id', 'region'\]"
            ):
                store.graph = mx.FeatureGraph([ShopRekeyed])
        with pytest.raises(mx.GraphError, match="new feature key"):
            store_factory(mx.FeatureGraph([ShopRekeyed]))

    def test_an_unwritten_feature_may_change_anything(self, store_factory):
        with store_factory(mx.FeatureGraph([Shop])) as store:
            store.graph = mx.FeatureGraph([ShopRekeyed])
            assert store.graph.spec("shop").id_columns == ("id", "region")

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            (pl.lit([1, 2]), pl.lit(["x"])),  # list[int] then list[str]
            (pl.lit({"a": 1}), pl.lit({"a": 3, "b": "x"})),  # a struct that gains a field
            (pl.lit({"a": 1}), pl.lit({"a": "text"})),  # a struct field retyped
            (pl.lit("text"), pl.lit(3)),  # a scalar changing kind
        ],
    )
    def test_nested_type_changes_are_refused_the_same_everywhere(
        self, store_factory, first, second
    ):
        spec = mx.FeatureSpec("notes", id_columns=["id"], fields=["text"])
        with store_factory(mx.FeatureGraph([spec])) as store:
            rows = store.resolve_update(
                "notes", samples=pl.DataFrame({"id": ["a"], "text": ["t"]})
            ).new
            store.write("notes", rows.with_columns(meta=first))
            history = store.history("notes")
            with pytest.raises(
                mx.WriteValidationError, match=r"'meta' is .* here but .* in the store"
            ):
                store.write("notes", rows.with_columns(meta=second))
            assert store.history("notes").equals(history)
            assert store.read("notes")["meta"].dtype == history["meta"].dtype

    def test_untyped_null_columns_are_stored_as_strings_everywhere(self, store_factory):
        spec = mx.FeatureSpec("notes", id_columns=["id"], fields=["text"])
        with store_factory(mx.FeatureGraph([spec])) as store:
            rows = store.resolve_update(
                "notes", samples=pl.DataFrame({"id": ["a"], "text": ["t"]})
            ).new
            store.write("notes", rows.with_columns(later=pl.lit(None)))
            assert store.read("notes").schema["later"] == pl.String
            store.write("notes", rows.with_columns(later=pl.lit("set")))
            assert store.read("notes")["later"].to_list() == ["set"]

    def test_graph_changes_say_what_moved_since_the_last_snapshot(self, store_factory):
        with store_factory(chain(["x"])) as store:
            run(store, "a", "b", root_samples=samples())
            recorded = store.graph_snapshots()
            assert recorded.height == 1 and recorded["tags"][0] == '{"recorded_by": "write"}'
            store.graph = chain(["x", "z"]).replace(
                chain(["x", "z"]).spec("a").with_field_code_version("x", "2")
            )
            lines = store.graph_changes.describe().splitlines()
            assert "a: code version bumped 'x' 1 -> 2" in lines
            assert "b: field added 'z'" in lines
            assert "b: version moved upstream 'x' (its parent fields moved)" in lines
            assert "c: version moved upstream 'y' (its parent fields moved)" in lines
        with store_factory(chain(["x", "z"])) as store:  # reopening compares with the snapshot
            assert "b: field added 'z'" in store.graph_changes.describe()
