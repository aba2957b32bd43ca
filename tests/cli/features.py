"""Graphs the CLI tests load as `tests.cli.features:ATTRIBUTE`.

`video`: the shared video graph (tests/core/video.py). `lineage`: image -> patch (1:N,
four patches per image) and image -> label_summary (N:1 on the label), for cascades.
"""

import polars as pl

import metaxy_core as mx
from tests.core import video

VIDEO = video.graph()
# Deploys: crop's frames refactored (same output); video's frames re-encoded (new output).
VIDEO_CROP_V2 = video.bump(VIDEO, "crop", "frames", "2")
VIDEO_FRAMES_V2 = video.bump(VIDEO, "video", "frames", "2")


class Image(mx.Feature, spec=mx.FeatureSpec("image", id_columns=["image_id"], fields=["pixels"])):
    label: int


class Patch(
    mx.Feature,
    spec=mx.FeatureSpec(
        "patch",
        id_columns=["image_id", "patch"],
        fields=["pixels"],
        deps=[mx.FeatureDep(Image, lineage=mx.Lineage.expansion(on=["image_id"]))],
    ),
):
    patch: int


class LabelSummary(
    mx.Feature,
    spec=mx.FeatureSpec(
        "label_summary",
        id_columns=["label"],
        fields=["pixels"],
        deps=[mx.FeatureDep(Image, lineage=mx.Lineage.aggregation(on=["label"]))],
    ),
):
    label: int
    count: int


LINEAGE = mx.FeatureGraph([Image, Patch, LabelSummary])


def lineage_graph() -> mx.FeatureGraph:
    """A function returning a graph is a valid target too."""
    return LINEAGE


# img<i> has the label i % 3.
LABEL = pl.col("image_id").str.slice(3).cast(pl.Int64) % 3


def fill_lineage(store: mx.MetadataStore, n: int = 6) -> None:
    """Images with labels i % 3, four patches each, one summary per label."""
    inputs = pl.DataFrame(
        {"image_id": [f"img{i}" for i in range(n)], "pixels": [f"p{i}" for i in range(n)]}
    )
    rows = store.resolve_update("image", samples=inputs).new
    store.write("image", rows.with_columns(label=LABEL))
    parents = store.resolve_update("patch").to_compute()
    children = parents.select("image_id").join(pl.DataFrame({"patch": [0, 1, 2, 3]}), how="cross")
    store.write("patch", mx.stamp_children(parents, children, on=["image_id"]))
    groups = store.resolve_update("label_summary").to_compute()
    store.write("label_summary", groups.with_columns(count=pl.lit(2)))


# One root feature: for stores made with other hash settings.
SMALL = mx.FeatureGraph([mx.FeatureSpec("a", id_columns=["id"], fields=["x"])])
