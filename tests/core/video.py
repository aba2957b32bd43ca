"""The video example graph shared by tests.

video{audio, frames} -> crop -> face_detection, and video -> transcript.
"""

import polars as pl

import metaxy_core as mx


class Video(
    mx.Feature, spec=mx.FeatureSpec("video", id_columns=["sample_id"], fields=["audio", "frames"])
):
    path: str


class Crop(
    mx.Feature,
    spec=mx.FeatureSpec("crop", id_columns=["sample_id"], fields=["audio", "frames"], deps=[Video]),
):
    crop_path: str


class FaceDetection(
    mx.Feature,
    spec=mx.FeatureSpec(
        "face_detection",
        id_columns=["sample_id"],
        fields=[mx.FieldSpec("faces", deps={"crop": ["frames"]})],
        deps=[Crop],
    ),
):
    n_faces: int


class Transcript(
    mx.Feature,
    spec=mx.FeatureSpec(
        "transcript",
        id_columns=["sample_id"],
        fields=[mx.FieldSpec("text", deps={"video": ["audio"]})],
        deps=[Video],
    ),
):
    text: str


FEATURES = [Video, Crop, FaceDetection, Transcript]
VALUES = {
    "video": {"path": "v.mp4"},
    "crop": {"crop_path": "c.mp4"},
    "face_detection": {"n_faces": 1},
    "transcript": {"text": "hi"},
}


def graph() -> mx.FeatureGraph:
    return mx.FeatureGraph(FEATURES)


def inputs(n: int = 100, *, audio_suffix: str = "", changed: int = 0) -> pl.DataFrame:
    """Root inputs: per-field input versions; the first `changed` samples get `audio_suffix`."""
    return pl.DataFrame(
        {
            "sample_id": [f"s{i:04d}" for i in range(n)],
            "audio": [f"a{i}" for i in range(n)],
            "frames": [f"f{i}" for i in range(n)],
        }
    ).with_columns(
        pl.when(pl.int_range(n) < changed)
        .then(pl.col("audio") + audio_suffix)
        .otherwise(pl.col("audio"))
    )


def bump(graph: mx.FeatureGraph, feature: str, field: str, code_version: str) -> mx.FeatureGraph:
    return graph.replace(graph.spec(feature).with_field_code_version(field, code_version))
