"""Definition versions: pinned golden values and "change X: only Y moves"."""

import polars as pl
import pytest

import metaxy_core as mx
from tests.core.video import Crop, FaceDetection, Transcript, Video, bump, graph

# Computed once from the video graph and pinned: a change here silently invalidates every
# stored sample of every user, so it must be deliberate. Last changed when definition hashes
# began hashing their parts as a JSON list (a code version may hold any text).
GOLDEN_FIELDS = {
    ("video", "audio"): "2edb068cd54fb9eb",
    ("video", "frames"): "91f08b91db91a08a",
    ("crop", "audio"): "eedae49965129602",
    ("crop", "frames"): "a1cd0ce6b9323918",
    ("face_detection", "faces"): "edadc6f3a766a8e8",
    ("transcript", "text"): "dd0df9cedd3021d3",
}
GOLDEN_FEATURES = {
    "video": "0dd37b55b13e0d2c",
    "crop": "6279ca097baabee1",
    "face_detection": "84d4b677afe76eb5",
    "transcript": "8fffe4780175a91f",
}
GOLDEN_CODE = {
    "video": "8ee8dbe7bcca4ba2",
    "crop": "dd82c6680184701b",
    "face_detection": "6634d2ffceb76b87",
    "transcript": "cbd790652b4ba7f3",
}
GOLDEN_PROJECT = "69660ffb9fed2368"


def field_versions(g: mx.FeatureGraph) -> dict[tuple[str, str], str]:
    return {(k.path, f): mx.field_version(g, k, f) for k in g.keys for f in g.spec(k).field_keys}


def feature_versions(g: mx.FeatureGraph) -> dict[str, str]:
    return {k.path: mx.feature_version(g, k) for k in g.keys}


def code_versions(g: mx.FeatureGraph) -> dict[str, str]:
    return {k.path: mx.feature_code_version(g, k) for k in g.keys}


def moved(before: dict, after: dict) -> set:
    return {k for k in before if before[k] != after[k]}


def test_golden_versions():
    g = graph()
    assert field_versions(g) == GOLDEN_FIELDS
    assert feature_versions(g) == GOLDEN_FEATURES
    assert code_versions(g) == GOLDEN_CODE
    assert mx.project_version(g) == GOLDEN_PROJECT == g.project_version


def test_versions_do_not_depend_on_declaration_order():
    g = mx.FeatureGraph([Transcript, FaceDetection, Crop, Video])
    assert field_versions(g) == GOLDEN_FIELDS
    assert mx.project_version(g) == GOLDEN_PROJECT


@pytest.mark.parametrize(
    ("feature", "field", "expected_fields", "expected_features"),
    [
        (
            "video",
            "audio",
            {("video", "audio"), ("crop", "audio"), ("transcript", "text")},
            {"video", "crop", "transcript"},
        ),
        (
            "video",
            "frames",
            {("video", "frames"), ("crop", "frames"), ("face_detection", "faces")},
            {"video", "crop", "face_detection"},
        ),
        ("crop", "audio", {("crop", "audio")}, {"crop"}),
        ("face_detection", "faces", {("face_detection", "faces")}, {"face_detection"}),
    ],
)
def test_code_bump_moves_exactly_the_field_downstream(
    feature, field, expected_fields, expected_features
):
    g = graph()
    bumped = bump(g, feature, field, "2")
    closure = {(feature, field)} | {(k.path, f) for k, f in g.field_downstream(feature, field)}
    assert moved(field_versions(g), field_versions(bumped)) == expected_fields == closure
    assert moved(feature_versions(g), feature_versions(bumped)) == expected_features
    assert moved(code_versions(g), code_versions(bumped)) == {
        feature
    }  # only the feature's own code
    assert mx.project_version(bumped) != mx.project_version(g)


def test_bumping_back_restores_the_versions():
    g = graph()
    again = bump(bump(g, "video", "audio", "2"), "video", "audio", "1")
    assert field_versions(again) == GOLDEN_FIELDS
    assert mx.project_version(again) == GOLDEN_PROJECT


def restyled(spec: mx.FeatureSpec, **changes) -> mx.FeatureSpec:
    fields = [
        mx.FieldSpec(f.key, code_version=f.code_version, deps=f.deps, description="new words")
        for f in spec.fields
    ]
    return mx.FeatureSpec(
        spec.key,
        id_columns=spec.id_columns,
        fields=fields,
        deps=spec.deps,
        description="a brand new description",
        tags={"team": "vision", "tier": "gold"},
        metadata={"owner": "someone", "nested": {"a": [1, 2]}},
    )


def test_descriptions_tags_metadata_never_change_versions():
    g = graph()
    changed = mx.FeatureGraph([restyled(g.spec(k)) for k in g.keys])
    assert field_versions(changed) == GOLDEN_FIELDS
    assert feature_versions(changed) == GOLDEN_FEATURES
    assert code_versions(changed) == GOLDEN_CODE
    assert mx.project_version(changed) == GOLDEN_PROJECT


def test_new_user_columns_never_change_versions():
    g = graph()
    wider = mx.FeatureDefinition(
        Video.spec,
        dict(g.definition("video").columns) | {"duration": pl.Float64(), "fps": pl.Int64()},
    )
    changed = g.replace(wider)
    assert field_versions(changed) == GOLDEN_FIELDS
    assert mx.project_version(changed) == GOLDEN_PROJECT


def test_class_feature_and_bare_spec_have_equal_versions():
    bare = mx.FeatureGraph([Video.spec, Crop.spec, FaceDetection.spec, Transcript.spec])
    assert field_versions(bare) == GOLDEN_FIELDS


def test_new_upstream_field_moves_only_features_reading_it():
    g = graph()
    extra_field = g.replace(
        mx.FeatureSpec("video", id_columns=["sample_id"], fields=["audio", "frames", "subtitles"])
    )
    # Same-named fields keep their versions; crop's fields map by name, so they do not move;
    # the feature version of video moves because it has a new field.
    assert (
        moved(
            field_versions(g),
            {k: v for k, v in field_versions(extra_field).items() if k in GOLDEN_FIELDS},
        )
        == set()
    )
    assert moved(feature_versions(g), feature_versions(extra_field)) == {"video"}


def test_version_shapes():
    g = graph()
    for value in [*GOLDEN_FIELDS.values(), *GOLDEN_FEATURES.values(), GOLDEN_PROJECT]:
        assert len(value) == 16 and int(value, 16) >= 0
    with pytest.raises(mx.UnknownFeatureError):
        mx.field_version(g, "nope", "audio")
    with pytest.raises(mx.SpecError, match="no field 'nope'"):
        mx.field_version(g, "video", "nope")


def test_new_upstream_field_moves_fields_that_read_all_fields():
    base = [
        mx.FeatureSpec("a", id_columns=["id"], fields=["x"]),
        mx.FeatureSpec("b", id_columns=["id"], fields=["summary"], deps=["a"]),
    ]
    before = mx.FeatureGraph(base)
    after = before.replace(mx.FeatureSpec("a", id_columns=["id"], fields=["x", "y"]))
    assert moved(
        field_versions(before),
        {k: v for k, v in field_versions(after).items() if k in field_versions(before)},
    ) == {("b", "summary")}


def test_code_versions_cannot_imitate_other_parts():
    """A code version may hold any text, the old separator and '=' included."""
    one = mx.FeatureSpec(
        "a", id_columns=["id"], fields=[mx.FieldSpec("x", code_version="1\x1fy=2")]
    )
    two = mx.FeatureSpec(
        "a",
        id_columns=["id"],
        fields=[mx.FieldSpec("x", code_version="1"), mx.FieldSpec("y", code_version="2")],
    )
    assert mx.feature_code_version(mx.FeatureGraph([one]), "a") != mx.feature_code_version(
        mx.FeatureGraph([two]), "a"
    )
    # A root field whose code version spells a parent reference vs a field with that parent.
    up = mx.FeatureSpec("up", id_columns=["id"], fields=["x"])
    root = mx.FeatureSpec("b", id_columns=["id"], fields=[mx.FieldSpec("x", code_version="1")])
    child = mx.FeatureSpec("b", id_columns=["id"], fields=["x"], deps=["up"])
    up_version = mx.field_version(mx.FeatureGraph([up]), "up", "x")
    tricky = mx.FeatureSpec(
        "b", id_columns=["id"], fields=[mx.FieldSpec("x", code_version=f"1\x1fup:x={up_version}")]
    )
    versions = {
        mx.field_version(mx.FeatureGraph([root]), "b", "x"),
        mx.field_version(mx.FeatureGraph([up, child]), "b", "x"),
        mx.field_version(mx.FeatureGraph([tricky]), "b", "x"),
    }
    assert len(versions) == 3
