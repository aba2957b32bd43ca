"""Feature classes: a spec plus a pydantic model of the user columns."""

import datetime as dt

import polars as pl
import pydantic
import pytest

import metaxy_core as mx
from tests.core.video import Crop, Video


def test_feature_class_carries_its_spec_and_columns():
    assert Video.spec.key == mx.FeatureKey("video")
    assert Video.column_dtypes() == {"sample_id": pl.String(), "path": pl.String()}
    assert Crop.column_dtypes() == {"sample_id": pl.String(), "crop_path": pl.String()}


def test_column_dtypes_cover_supported_annotations():
    class Clip(mx.Feature, spec=mx.FeatureSpec("clip", id_columns=["clip_id", "part"])):
        clip_id: int  # declared id columns keep their type
        name: str
        n: int
        score: float
        ok: bool
        blob: bytes
        at: dt.datetime
        day: dt.date
        tags: list[str]
        maybe: int | None

    assert Clip.column_dtypes() == {
        "clip_id": pl.Int64(),
        "part": pl.String(),  # undeclared id columns are strings
        "name": pl.String(),
        "n": pl.Int64(),
        "score": pl.Float64(),
        "ok": pl.Boolean(),
        "blob": pl.Binary(),
        "at": pl.Datetime("us", "UTC"),
        "day": pl.Date(),
        "tags": pl.List(pl.String()),
        "maybe": pl.Int64(),
    }


def test_unsupported_annotation_is_a_spec_error():
    class Odd(mx.Feature, spec=mx.FeatureSpec("odd", id_columns=["id"])):
        value: dict[str, int]

    with pytest.raises(mx.SpecError, match="Feature odd, column 'value': Unsupported column type"):
        Odd.column_dtypes()
    with pytest.raises(mx.SpecError, match="column 'value'"):
        mx.FeatureGraph([Odd])


def test_feature_class_without_spec_is_rejected():
    with pytest.raises(mx.SpecError, match="NoSpec needs a spec"):

        class NoSpec(mx.Feature):
            path: str


def test_spec_keyword_must_be_a_feature_spec():
    with pytest.raises(mx.SpecError, match="spec must be a FeatureSpec"):

        class Wrong(mx.Feature, spec={"key": "wrong"}):  # type: ignore[arg-type]
            path: str


def test_feature_instances_are_frozen_and_forbid_extras():
    video = Video(path="a.mp4")
    with pytest.raises(pydantic.ValidationError):
        video.path = "b.mp4"
    with pytest.raises(pydantic.ValidationError):
        Video(path="a.mp4", extra=1)


def test_graph_definition_from_class_and_from_spec():
    graph = mx.FeatureGraph([Video, mx.FeatureSpec("bare", id_columns=["id"])])
    assert graph.definition(Video).feature_class is Video
    assert graph.definition("video").user_columns == {"path": pl.String()}
    assert graph.definition("bare").feature_class is None
    assert dict(graph.definition("bare").columns) == {"id": pl.String()}
