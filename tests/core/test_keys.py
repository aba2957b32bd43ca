"""Feature keys and field keys: parsing, validation, equality."""

import pytest

import metaxy_core as mx
from metaxy_core._keys import validate_field_key


@pytest.mark.parametrize("key", ["video/crop", ["video", "crop"], ("video", "crop")])
def test_key_from_string_or_parts(key):
    fk = mx.FeatureKey(key)
    assert fk.parts == ("video", "crop")
    assert fk.path == "video/crop"
    assert str(fk) == "video/crop"
    assert fk.table_name == "video__crop"


def test_key_equality_hash_and_order():
    a = mx.FeatureKey("video/crop")
    assert a == mx.FeatureKey(["video", "crop"])
    assert a == "video/crop"
    assert hash(a) == hash(mx.FeatureKey(("video", "crop")))
    assert mx.FeatureKey("a") < mx.FeatureKey("b") < mx.FeatureKey("b/a")
    assert mx.FeatureKey(a) == a
    assert mx.FeatureKey.of(a) is a
    assert repr(a) == "FeatureKey('video/crop')"


def test_key_is_immutable():
    key = mx.FeatureKey("video")
    with pytest.raises(AttributeError):
        key.parts = ("x",)


def test_table_name_replaces_dashes_and_dots():
    assert mx.FeatureKey("my-team/v1.2").table_name == "my_team__v1_2"


@pytest.mark.parametrize(
    "bad",
    [
        *("", "a//b", "/a", "a/", "a b", "a/b c", "ü", [], ["a", ""], ["a", 3], ["a/b"], 3, None),
        *("video\n", "video\r", "\nvideo", "a/b\n", ["video\n"], "vid\x00eo"),
    ],
)
def test_invalid_keys_raise_invalid_key_error(bad):
    with pytest.raises(mx.InvalidKeyError, match="Invalid feature key") as info:
        mx.FeatureKey(bad)
    assert isinstance(info.value, mx.MetaxyError)
    assert "video/crop" in str(info.value)  # the message shows a valid example


@pytest.mark.parametrize("good", ["audio", "_x", "frames_2"])
def test_valid_field_keys(good):
    assert validate_field_key(good) == good


@pytest.mark.parametrize(
    "bad", ["", "Audio", "2x", "a-b", "a/b", "a b", None, 3, "audio\n", "audio\r\n", "\naudio"]
)
def test_invalid_field_keys(bad):
    with pytest.raises(mx.InvalidKeyError, match="Invalid field key"):
        validate_field_key(bad)


def test_field_spec_validates_its_key():
    with pytest.raises(mx.InvalidKeyError, match="'Audio'"):
        mx.FieldSpec("Audio")


@pytest.mark.parametrize(
    "bad", ["", " id", "id ", "id\n", "i\td", "a\x00b", "metaxy_id", "__mx_id", 3, None]
)
def test_column_names_are_validated_where_they_are_declared(bad):
    with pytest.raises(mx.InvalidKeyError, match="column name"):
        mx.FeatureSpec("v", id_columns=[bad])
    with pytest.raises(mx.InvalidKeyError, match="column name"):
        mx.FeatureDep("v", rename={"path": bad})
    with pytest.raises(mx.InvalidKeyError, match="column name"):
        mx.Lineage.aggregation(on=[bad])


@pytest.mark.parametrize(
    "odd", ["sample id", "sample-id", "Sample`ID", 'a"b', "ünï", "x' OR '1'='1"]
)
def test_odd_but_printable_column_names_are_accepted(odd):
    assert mx.FeatureSpec("v", id_columns=[odd]).id_columns == (odd,)
