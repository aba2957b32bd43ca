"""The explicit feature graph: validation, order, field parents, downstream, snapshots."""

import datetime as dt
import json
import sys
import types

import polars as pl
import pytest

import metaxy_core as mx
from tests.core import video as video_module
from tests.core.video import Crop, FaceDetection, Transcript, Video

K = mx.FeatureKey


def spec(key, *, ids=("sample_id",), fields=("default",), deps=()) -> mx.FeatureSpec:
    return mx.FeatureSpec(key, id_columns=list(ids), fields=list(fields), deps=list(deps))


def with_columns(feature_spec: mx.FeatureSpec, **columns: pl.DataType) -> mx.FeatureDefinition:
    ids = {c: pl.String() for c in feature_spec.id_columns}
    return mx.FeatureDefinition(feature_spec, ids | columns)


# -- validation -----------------------------------------------------------------------------


def test_duplicate_keys():
    with pytest.raises(mx.GraphError, match="Feature key a is defined twice"):
        mx.FeatureGraph([spec("a"), spec("a", fields=["x"])])


def test_unknown_dep():
    with pytest.raises(mx.GraphError, match="b depends on missing, which is not in the graph"):
        mx.FeatureGraph([spec("a"), spec("b", deps=["missing"])])


def test_not_a_feature():
    with pytest.raises(mx.GraphError, match="pass Feature classes or FeatureSpecs"):
        mx.FeatureGraph([spec("a"), "b"])


def test_field_dep_on_unknown_field_lists_the_real_ones():
    bad = spec("b", fields=[mx.FieldSpec("x", deps={"a": ["nope"]})], deps=["a"])
    with pytest.raises(
        mx.GraphError,
        match=r"b, field 'x': a has no field\(s\) \['nope'\]; its fields: \['audio', 'frames'\]",
    ):
        mx.FeatureGraph([spec("a", fields=["audio", "frames"]), bad])


def test_field_dep_on_feature_that_is_not_a_dep():
    bad = spec("b", fields=[mx.FieldSpec("x", deps={"c": None})], deps=["a"])
    with pytest.raises(mx.GraphError, match="b, field 'x': c is not a dep of the feature"):
        mx.FeatureGraph([spec("a"), spec("c"), bad])


def test_cycle_message_names_the_cycle():
    features = [spec("a", deps=["c"]), spec("b", deps=["a"]), spec("c", deps=["b"]), spec("root")]
    with pytest.raises(mx.GraphError, match="Dependency cycle: a -> c -> b -> a"):
        mx.FeatureGraph(features)


def test_column_collision_between_upstreams_suggests_rename():
    a = with_columns(spec("a"), path=pl.String())
    b = with_columns(spec("b"), path=pl.String())
    with pytest.raises(
        mx.GraphError, match=r"column 'path' comes from both a and b\. Hint: rename"
    ) as info:
        mx.FeatureGraph([a, b, spec("leaf", deps=["a", "b"])])
    assert "FeatureDep('b', rename={'path': 'b_path'})" in str(info.value)


def test_rename_or_select_resolves_a_collision():
    a = with_columns(spec("a"), path=pl.String())
    b = with_columns(spec("b"), path=pl.String(), size=pl.Int64())
    renamed = mx.FeatureGraph(
        [a, b, spec("leaf", deps=["a", mx.FeatureDep("b", rename={"path": "b_path"})])]
    )
    assert renamed.upstream_columns("leaf") == {
        K("a"): {"path": "path"},
        K("b"): {"path": "b_path", "size": "size"},
    }
    selected = mx.FeatureGraph(
        [a, b, spec("leaf", deps=["a", mx.FeatureDep("b", select=["size"])])]
    )
    assert selected.upstream_columns("leaf")[K("b")] == {"size": "size"}


@pytest.mark.parametrize(
    ("dep", "message"),
    [
        (mx.FeatureDep("a", rename={"nope": "x"}), "unknown upstream column 'nope'"),
        (mx.FeatureDep("a", select=["nope"]), "unknown upstream column 'nope'"),
        (mx.FeatureDep("a", select=["sample_id"]), "'select' lists id columns"),
        (
            mx.FeatureDep("a", rename={"sample_id": "other"}),
            "identity lineage needs the upstream ids",
        ),
        (mx.FeatureDep("a", lineage=mx.Lineage.aggregation(on=["path"])), "aggregation 'on'"),
        (
            mx.FeatureDep("a", lineage=mx.Lineage.expansion(on=["sample_id"])),
            "strict subset of the id columns",
        ),
    ],
)
def test_bad_edges(dep, message):
    a = with_columns(spec("a"), path=pl.String())
    with pytest.raises(mx.GraphError, match=message) as info:
        mx.FeatureGraph([a, spec("leaf", deps=[dep])])
    assert "Feature leaf, dep on a" in str(info.value)


def test_all_optional_deps_rejected():
    with pytest.raises(mx.GraphError, match="at least one dep must be non-optional"):
        mx.FeatureGraph([spec("a"), spec("leaf", deps=[mx.FeatureDep("a", optional=True)])])


def test_expansion_deps_must_share_on_columns():
    up1 = spec("v", ids=["video_id"])
    up2 = spec("w", ids=["clip_id"])
    leaf = spec(
        "frames",
        ids=["video_id", "clip_id", "frame"],
        deps=[
            mx.FeatureDep("v", lineage=mx.Lineage.expansion(on=["video_id"])),
            mx.FeatureDep("w", lineage=mx.Lineage.expansion(on=["clip_id"])),
        ],
    )
    with pytest.raises(mx.GraphError, match="same 'on' columns"):
        mx.FeatureGraph([up1, up2, leaf])


def test_valid_aggregation_and_expansion_edges():
    utterances = with_columns(
        spec("utterance", ids=["utt_id"]), speaker_id=pl.String(), text=pl.String()
    )
    speakers = spec(
        "speaker",
        ids=["speaker_id"],
        deps=[mx.FeatureDep("utterance", lineage=mx.Lineage.aggregation(on=["speaker_id"]))],
    )
    frames = spec(
        "frame",
        ids=["utt_id", "frame"],
        deps=[mx.FeatureDep("utterance", lineage=mx.Lineage.expansion(on=["utt_id"]))],
    )
    graph = mx.FeatureGraph([utterances, speakers, frames])
    assert graph.upstream_columns("speaker") == {K("utterance"): {}}  # one row stands for many
    assert graph.upstream_columns("frame") == {
        K("utterance"): {"speaker_id": "speaker_id", "text": "text"}
    }


# -- lookups, order, closure ------------------------------------------------------------------


def video_graph() -> mx.FeatureGraph:
    return mx.FeatureGraph([Transcript, FaceDetection, Crop, Video])  # any input order


def test_topological_order_upstreams_first_ties_by_key():
    order = [k.path for k in video_graph().topological_order()]
    assert order == ["video", "crop", "face_detection", "transcript"]
    assert video_graph().keys == video_graph().topological_order()
    diamond = mx.FeatureGraph(
        [spec("z"), spec("d", deps=["b", "c"]), spec("c", deps=["z"]), spec("b", deps=["z"])]
    )
    assert [k.path for k in diamond.topological_order()] == ["z", "b", "c", "d"]


def test_lookups():
    graph = video_graph()
    assert len(graph) == 4
    assert "crop" in graph and Crop in graph and K("crop") in graph
    assert "nope" not in graph and 3 not in graph
    assert graph.spec(Crop) is Crop.spec
    assert graph.definition("crop").feature_class is Crop
    with pytest.raises(
        mx.UnknownFeatureError, match="Unknown feature nope; the graph has: video, crop"
    ) as info:
        graph.spec("nope")
    assert isinstance(info.value, KeyError) and isinstance(info.value, mx.MetaxyError)


def test_downstream_closure():
    graph = video_graph()
    assert [k.path for k in graph.downstream(["video"])] == [
        "video",
        "crop",
        "face_detection",
        "transcript",
    ]
    assert [k.path for k in graph.downstream([Crop], include_self=False)] == ["face_detection"]
    assert graph.downstream(["transcript"], include_self=False) == ()
    with pytest.raises(mx.UnknownFeatureError):
        graph.downstream(["nope"])


def test_default_field_mapping_same_name_else_all():
    graph = mx.FeatureGraph(
        [
            spec("video", fields=["audio", "frames"]),
            spec("meta", fields=["size"]),
            spec("crop", fields=["audio", "frames", "summary"], deps=["video", "meta"]),
        ]
    )
    assert graph.field_parents("crop", "audio") == ((K("meta"), "size"), (K("video"), "audio"))
    assert graph.field_parents("crop", "summary") == (
        (K("meta"), "size"),
        (K("video"), "audio"),
        (K("video"), "frames"),
    )
    assert graph.field_parents("video", "audio") == ()


def test_explicit_field_deps():
    graph = video_graph()
    assert graph.field_parents("face_detection", "faces") == ((K("crop"), "frames"),)
    assert graph.field_parents("transcript", "text") == ((K("video"), "audio"),)
    # An explicit dep without field names means all fields, even if one has the same name.
    explicit_all = mx.FeatureGraph(
        [
            spec("video", fields=["audio", "frames"]),
            spec(
                "crop", fields=[mx.FieldSpec("audio", deps=[mx.FieldDep("video")])], deps=["video"]
            ),
        ]
    )
    assert explicit_all.field_parents("crop", "audio") == (
        (K("video"), "audio"),
        (K("video"), "frames"),
    )
    no_parents = mx.FeatureGraph(
        [spec("video"), spec("c", fields=[mx.FieldSpec("x", deps=[])], deps=["video"])]
    )
    assert no_parents.field_parents("c", "x") == ()
    with pytest.raises(mx.SpecError, match="no field 'nope'"):
        graph.field_parents("crop", "nope")


def test_field_downstream():
    graph = video_graph()
    assert graph.field_downstream("video", "audio") == (
        (K("crop"), "audio"),
        (K("transcript"), "text"),
    )
    assert graph.field_downstream(Video, "frames") == (
        (K("crop"), "frames"),
        (K("face_detection"), "faces"),
    )
    assert graph.field_downstream("crop", "audio") == ()


def test_replace_swaps_a_definition():
    graph = video_graph()
    bumped = graph.replace(Video.spec.with_field_code_version("audio", "2"))
    assert bumped.spec("video").field("audio").code_version == "2"
    assert graph.spec("video").field("audio").code_version == "1"  # graphs are not mutated
    # a bare spec keeps the feature's typed columns and class
    assert bumped.definition("video").columns == graph.definition("video").columns
    assert bumped.definition("video").feature_class is Video
    with pytest.raises(mx.UnknownFeatureError, match="Cannot replace unknown feature zzz"):
        graph.replace(spec("zzz"))


# -- discovery and snapshots ------------------------------------------------------------------


def test_from_module_object_and_name():
    by_object = mx.FeatureGraph.from_module(video_module)
    by_name = mx.FeatureGraph.from_module("tests.core.video")
    assert (
        set(by_object.keys)
        == set(by_name.keys)
        == {K("video"), K("crop"), K("face_detection"), K("transcript")}
    )


def test_from_module_ignores_imported_features(monkeypatch):
    module = types.ModuleType("mx_discovery_probe")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    code = (
        "import metaxy_core as mx\n"
        "from tests.core.video import Video\n"
        "class Local(mx.Feature, spec=mx.FeatureSpec('local', id_columns=['sample_id'])):\n"
        "    x: int\n"
    )
    exec(compile(code, "<probe>", "exec"), module.__dict__)
    assert [k.path for k in mx.FeatureGraph.from_module("mx_discovery_probe").keys] == ["local"]


def rich_graph() -> mx.FeatureGraph:
    import datetime as dt

    class Raw(
        mx.Feature,
        spec=mx.FeatureSpec("media/raw", id_columns=["sample_id"], fields=["audio", "frames"]),
    ):
        path: str
        size: int
        at: dt.datetime
        tags: list[str]

    class Clean(
        mx.Feature,
        spec=mx.FeatureSpec(
            "media/clean",
            id_columns=["sample_id"],
            fields=[
                mx.FieldSpec(
                    "audio", code_version="3", deps={"media/raw": ["audio"]}, description="d"
                ),
                "frames",
            ],
            deps=[
                mx.FeatureDep(
                    Raw, rename={"path": "raw_path"}, select=["path", "size"], filters=["size > 1"]
                )
            ],
            description="clean media",
            tags={"team": "ml"},
        ),
    ):
        score: float | None

    return mx.FeatureGraph([Raw, Clean])


def test_snapshot_round_trip_keeps_versions_and_columns():
    graph = rich_graph()
    text = graph.to_json()
    loaded = mx.FeatureGraph.from_snapshot(text)
    assert loaded.project_version == graph.project_version
    for key in graph.keys:
        assert mx.feature_version(loaded, key) == mx.feature_version(graph, key)
        for f in graph.spec(key).field_keys:
            assert mx.field_version(loaded, key, f) == mx.field_version(graph, key, f)
        assert loaded.spec(key) == graph.spec(key)
        assert dict(loaded.definition(key).columns) == dict(graph.definition(key).columns)
    assert (
        mx.FeatureGraph.from_snapshot(json.loads(text)).to_json() == text
    )  # dict form too, stable
    data = json.loads(text)
    assert data["project_version"] == graph.project_version
    assert [f["key"] for f in data["features"]] == ["media/raw", "media/clean"]


@pytest.mark.parametrize(("first", "second"), [("a-b", "a_b"), ("x/y", "x__y"), ("v1.2", "v1_2")])
def test_keys_sharing_a_table_name_are_rejected(first, second):
    with pytest.raises(
        mx.GraphError, match=f"Feature keys {first} and {second} map to the same table"
    ):
        mx.FeatureGraph([spec(first), spec(second)])


def test_system_table_names_are_reserved():
    with pytest.raises(
        mx.GraphError, match="reserved: it maps to the system table 'metaxy_system__settings'"
    ):
        mx.FeatureGraph([spec("metaxy_system/settings")])


def test_snapshot_column_types_round_trip_and_nothing_else_is_read():
    class Typed(mx.Feature, spec=mx.FeatureSpec("typed", id_columns=["sample_id"], fields=["x"])):
        n: int
        score: float | None = None
        ok: bool
        raw: bytes
        day: dt.date
        at: dt.datetime
        tags: list[str]
        nested: list[list[int]]

    graph = mx.FeatureGraph([Typed])
    loaded = mx.FeatureGraph.from_snapshot(graph.to_json())
    assert dict(loaded.definition("typed").columns) == dict(graph.definition("typed").columns)
    snapshot = graph.snapshot()
    snapshot["features"][0]["columns"]["n"] = "__import__('os').getcwd()"
    with pytest.raises(mx.SpecError, match="Cannot read column type"):
        mx.FeatureGraph.from_snapshot(snapshot)


def test_keys_differing_only_in_case_are_refused():
    with pytest.raises(mx.GraphError, match=r"Video and video map to the same table"):
        mx.FeatureGraph(
            [mx.FeatureSpec("Video", id_columns=["id"]), mx.FeatureSpec("video", id_columns=["id"])]
        )
    with pytest.raises(mx.GraphError, match="reserved"):
        mx.FeatureGraph([mx.FeatureSpec("METAXY_SYSTEM/settings", id_columns=["id"])])


class _Upstream(mx.Feature, spec=mx.FeatureSpec("up", id_columns=["id"])):
    path: str
    other: str


@pytest.mark.parametrize(
    ("rename", "message"),
    [
        ({"path": "id"}, r"rename 'path' -> 'id' lands a user column on the id column"),
        ({"path": "other"}, r"rename 'path' -> 'other' collides with the upstream column"),
    ],
)
def test_renames_onto_ids_or_other_columns_are_refused_at_graph_build(rename, message):
    down = mx.FeatureSpec("down", id_columns=["id"], deps=[mx.FeatureDep(_Upstream, rename=rename)])
    with pytest.raises(mx.GraphError, match=message):
        mx.FeatureGraph([_Upstream, down])


def test_renames_onto_system_columns_or_one_name_twice_are_refused_at_the_dep():
    with pytest.raises(mx.InvalidKeyError, match="metaxy_provenance"):
        mx.FeatureDep(_Upstream, rename={"path": "metaxy_provenance"})
    with pytest.raises(mx.SpecError, match="several columns onto one name"):
        mx.FeatureDep(_Upstream, rename={"path": "p", "other": "p"})


def test_swapping_two_column_names_is_a_valid_rename():
    down = mx.FeatureSpec(
        "down",
        id_columns=["id"],
        deps=[mx.FeatureDep(_Upstream, rename={"path": "other", "other": "path"})],
    )
    graph = mx.FeatureGraph([_Upstream, down])
    assert graph.upstream_columns("down")[mx.FeatureKey("up")] == {"path": "other", "other": "path"}


def test_single_values_are_not_split_into_characters():
    spec = mx.FeatureSpec("v", id_columns="id", fields="audio", deps="video")
    assert spec.field_keys == ("audio",) and spec.id_columns == ("id",)
    assert [d.feature.path for d in spec.deps] == ["video"]


class _Numbered(mx.Feature, spec=mx.FeatureSpec("numbered", id_columns=["n"], fields=["x"])):
    n: int


def test_undeclared_ids_inherit_the_upstream_type_through_any_lineage():
    child = mx.FeatureSpec("child", id_columns=["n"], deps=["numbered"])
    part = mx.FeatureSpec(
        "part",
        id_columns=["n", "i"],
        deps=[mx.FeatureDep("numbered", lineage=mx.Lineage.expansion(on=["n"]))],
    )
    grand = mx.FeatureSpec("grand", id_columns=["n"], deps=["child"])
    graph = mx.FeatureGraph([_Numbered, child, part, grand])
    assert graph.definition("child").columns["n"] == pl.Int64
    assert graph.definition("grand").columns["n"] == pl.Int64  # two levels down
    assert graph.definition("part").columns == {"n": pl.Int64, "i": pl.String}
    store = mx.MemoryStore(graph)
    samples = pl.DataFrame({"n": [1, 2], "x": ["a", "b"]})
    store.write("numbered", store.resolve_update("numbered", samples=samples).new)
    store.write("child", store.resolve_update("child").new)
    assert store.read("child").schema["n"] == pl.Int64


def test_a_declared_id_type_disagreeing_with_its_upstream_is_refused_at_graph_build():
    class Child(mx.Feature, spec=mx.FeatureSpec("child", id_columns=["n"], deps=["numbered"])):
        n: str

    with pytest.raises(mx.GraphError, match=r"child: id column 'n' is String here but Int64 in"):
        mx.FeatureGraph([_Numbered, Child])
