"""Frozen specs: fields, field deps, feature deps with their options, features."""

import dataclasses

import pytest

import metaxy_core as mx
from tests.core.video import Crop, Video


def video_spec(**kwargs) -> mx.FeatureSpec:
    return mx.FeatureSpec("video", id_columns=["sample_id"], fields=["audio", "frames"], **kwargs)


# -- frozen, keyword-only, unknown options ------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "attr"),
    [
        (mx.FieldSpec("audio"), "code_version"),
        (mx.FieldDep("video", ["audio"]), "fields"),
        (mx.FeatureDep("video"), "optional"),
        (mx.Lineage.aggregation(on=["a"]), "on"),
        (video_spec(), "key"),
        (video_spec(), "fields"),
    ],
)
def test_specs_are_frozen(obj, attr):
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, attr, getattr(obj, attr))


@pytest.mark.parametrize(
    "build",
    [
        lambda: mx.FeatureSpec("video", id_columns=["id"], bogus=1),
        lambda: mx.FeatureSpec("video", ["id"]),  # options are keyword-only
        lambda: mx.FieldSpec("audio", codeversion="2"),
        lambda: mx.FieldSpec("audio", "2"),
        lambda: mx.FeatureDep("video", renam={"a": "b"}),
        lambda: mx.FeatureDep("video", {"a": "b"}),
        lambda: mx.Lineage.aggregation(by=["a"]),
    ],
)
def test_unknown_or_positional_options_are_rejected(build):
    with pytest.raises((TypeError, mx.SpecError)):
        build()


# -- fields ---------------------------------------------------------------------------------


def test_field_spec_defaults_and_int_code_version():
    f = mx.FieldSpec("audio")
    assert (f.key, f.code_version, f.deps, f.description) == ("audio", "1", None, None)
    assert mx.FieldSpec("audio", code_version=3).code_version == "3"


@pytest.mark.parametrize("bad", ["", None, 1.5, ["1"]])
def test_field_code_version_must_be_a_non_empty_string(bad):
    with pytest.raises(mx.SpecError, match=r"'audio'.*code_version"):
        mx.FieldSpec("audio", code_version=bad)


def test_field_deps_accept_a_mapping_or_field_deps():
    by_map = mx.FieldSpec("faces", deps={"crop": ["frames"], Video: None})
    by_list = mx.FieldSpec("faces", deps=[mx.FieldDep("crop", ["frames"]), mx.FieldDep("video")])
    assert by_map == by_list
    assert by_map.deps == (mx.FieldDep("crop", ("frames",)), mx.FieldDep("video", None))


def test_field_dep_accepts_key_class_spec_and_single_field():
    assert mx.FieldDep(Crop, "frames") == mx.FieldDep("crop", ["frames"])
    assert mx.FieldDep(Crop.spec).feature == mx.FeatureKey("crop")
    assert mx.FieldDep("crop").fields is None  # all fields of the upstream


def test_field_dep_validates_field_names():
    with pytest.raises(mx.InvalidKeyError, match="'Frames'"):
        mx.FieldDep("crop", ["Frames"])


def test_empty_field_deps_means_no_parents_not_default():
    assert mx.FieldSpec("x", deps=[]).deps == ()


# -- lineage ----------------------------------------------------------------------------------


def test_lineage_kinds():
    assert mx.Lineage.identity() == mx.Lineage()
    agg = mx.Lineage.aggregation(on=["speaker_id"])
    assert (agg.kind, agg.on) == ("aggregation", ("speaker_id",))
    exp = mx.Lineage.expansion(on=["video_id"])
    assert (exp.kind, exp.on) == ("expansion", ("video_id",))


@pytest.mark.parametrize(
    ("kind", "on", "message"),
    [
        ("identity", ("a",), "takes no 'on'"),
        ("aggregation", (), "needs 'on'"),
        ("expansion", (), "needs 'on'"),
        ("fan_out", ("a",), "Unknown lineage kind 'fan_out'"),
    ],
)
def test_bad_lineage(kind, on, message):
    with pytest.raises(mx.SpecError, match=message):
        mx.Lineage(kind, on)


# -- feature deps -----------------------------------------------------------------------------


def test_feature_dep_defaults():
    dep = mx.FeatureDep(Video)
    assert dep.feature == mx.FeatureKey("video")
    assert (dep.rename, dep.select, dep.filters, dep.optional) == ((), None, (), False)
    assert dep.lineage == mx.Lineage.identity()


def test_feature_dep_options():
    dep = mx.FeatureDep(
        "video",
        rename={"path": "video_path", "b": "a"},
        select=["path"],
        filters="duration > 5",
        lineage=mx.Lineage.aggregation(on=["speaker"]),
        optional=True,
    )
    assert dep.rename == (("b", "a"), ("path", "video_path"))  # sorted: order-insensitive equality
    assert dep.rename_map == {"path": "video_path", "b": "a"}
    assert dep.select == ("path",)
    assert dep.filters == ("duration > 5",)
    assert dep.lineage.kind == "aggregation"
    assert dep.optional is True
    assert dep == mx.FeatureDep(
        "video",
        rename={"b": "a", "path": "video_path"},
        select=("path",),
        filters=["duration > 5"],
        lineage=mx.Lineage.aggregation(on=("speaker",)),
        optional=True,
    )


@pytest.mark.parametrize("bad", ["", "   ", [""], [3]])
def test_feature_dep_filters_must_be_predicates(bad):
    with pytest.raises(mx.SpecError, match=r"Dep on video: Filter .*non-empty string"):
        mx.FeatureDep("video", filters=bad)


# -- feature specs ----------------------------------------------------------------------------


def test_feature_spec_basics():
    spec = mx.FeatureSpec(
        ["media", "video"],
        id_columns="sample_id",
        fields=["audio", mx.FieldSpec("frames", code_version="2")],
    )
    assert spec.key == mx.FeatureKey("media/video")
    assert spec.id_columns == ("sample_id",)
    assert spec.field_keys == ("audio", "frames")
    assert spec.field("frames").code_version == "2"
    assert spec.is_root
    assert spec.parent_key == ("sample_id",)
    assert mx.FeatureSpec("x", id_columns=["id"]).field_keys == ("default",)


def test_feature_spec_deps_accept_keys_specs_classes_and_edges():
    spec = mx.FeatureSpec(
        "leaf",
        id_columns=["sample_id"],
        deps=["a", Video.spec, Crop, mx.FeatureDep("b", optional=True)],
    )
    assert [d.feature.path for d in spec.deps] == ["a", "video", "crop", "b"]
    assert not spec.is_root
    assert spec.dep("b").optional
    assert spec.dep(Crop) == mx.FeatureDep("crop")
    with pytest.raises(mx.SpecError, match="no dep on zzz"):
        spec.dep("zzz")


def test_parent_key_of_expansion_is_the_on_columns():
    spec = mx.FeatureSpec(
        "frames",
        id_columns=["video_id", "frame"],
        deps=[mx.FeatureDep("video", lineage=mx.Lineage.expansion(on=["video_id"]))],
    )
    assert spec.parent_key == ("video_id",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id_columns": []}, "id_columns must be a non-empty"),
        ({"id_columns": ["a", "a"]}, "without repeats"),
        ({"id_columns": ["id"], "fields": []}, "fields must be non-empty and unique"),
        ({"id_columns": ["id"], "fields": ["a", mx.FieldSpec("a")]}, r"\['a', 'a'\]"),
        (
            {"id_columns": ["id"], "deps": ["up", mx.FeatureDep("up", optional=True)]},
            "each upstream may appear once",
        ),
        ({"id_columns": ["id"], "deps": ["video"]}, "depends on itself"),
    ],
)
def test_invalid_feature_specs(kwargs, message):
    with pytest.raises(mx.SpecError, match=message) as info:
        mx.FeatureSpec("video", **kwargs)
    assert "video" in str(info.value)


def test_unknown_field_lookup_lists_fields():
    with pytest.raises(mx.SpecError, match=r"no field 'faces'; fields: \['audio', 'frames'\]"):
        video_spec().field("faces")


def test_with_field_code_version_copies():
    spec = video_spec(description="d", tags={"team": "ml"}, metadata={"owner": "me"})
    bumped = spec.with_field_code_version("audio", 2)
    assert bumped.field("audio").code_version == "2"
    assert bumped.field("frames") == spec.field("frames")
    assert spec.field("audio").code_version == "1"  # the original is untouched
    assert (bumped.description, bumped.tags, bumped.metadata) == (
        spec.description,
        spec.tags,
        spec.metadata,
    )
    assert bumped != spec
    with pytest.raises(mx.SpecError, match="no field 'nope'"):
        spec.with_field_code_version("nope", "2")


def test_equality_ignores_metadata_but_not_description_or_tags():
    assert video_spec(metadata={"a": 1}) == video_spec(metadata={"a": 2})
    assert video_spec(tags={"a": "1"}) == video_spec(tags={"a": "1"})
    assert video_spec(tags={"a": "1"}) != video_spec(tags={"a": "2"})
    assert hash(video_spec()) == hash(video_spec())
