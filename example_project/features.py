"""The example's features: handwritten digit images and what is computed from them.

    image{pixels, label} ──► normalized{pixels} ──► embedding{vector} ══► class_summary{centroid}
       │   │                                            ▲  (N:1 on digit)
       │   └──────────── label ─────────────────────────┘
       ├──► augmented{pixels}   (1:N: four shifted variants per image)
       └──► caption{text}       (reads image.label only)

Field-level deps are what make the example interesting: bumping `normalized.pixels` recomputes
normalized, embedding and class_summary, while augmented (reads `image.pixels`) and caption
(reads `image.label`) have nothing to do.
"""

import metaxy_core as mx

IMAGE_ID = "image_id"


class Image(
    mx.Feature,
    spec=mx.FeatureSpec(
        "image",
        id_columns=[IMAGE_ID],
        fields=[
            mx.FieldSpec("pixels", description="The 8x8 grey levels (0-16) of the scanned digit."),
            mx.FieldSpec("label", description="The digit a human wrote (0-9)."),
        ],
        description="scikit-learn's bundled UCI handwritten digits, one row per image.",
        tags={"source": "sklearn_digits"},
    ),
):
    """One scanned digit: its 64 grey levels and its label."""

    pixel_values: list[float]
    digit: int


class Normalized(
    mx.Feature,
    spec=mx.FeatureSpec(
        "normalized",
        id_columns=[IMAGE_ID],
        fields=[mx.FieldSpec("pixels", description="Grey levels centred and scaled to unit norm.")],
        deps=[mx.FeatureDep(Image, select=["pixel_values"])],
        description="Each image centred on zero and scaled to unit length.",
    ),
):
    """The image's pixels, centred and scaled to unit length."""

    normalized_pixels: list[float]


class Embedding(
    mx.Feature,
    spec=mx.FeatureSpec(
        "embedding",
        id_columns=[IMAGE_ID],
        fields=[
            mx.FieldSpec(
                "vector",
                # The row carries the label, so a relabelled image is recomputed too.
                deps={"normalized": ["pixels"], "image": ["label"]},
                description="Low-frequency 2D DCT coefficients of the normalized image.",
            )
        ],
        deps=[Normalized, mx.FeatureDep(Image, select=["digit"])],
        description="A fixed 16-dimensional projection (the 4x4 lowest DCT frequencies).",
    ),
):
    """A 16-dimensional embedding of the normalized image, with the image's digit."""

    vector: list[float]
    digit: int


class Augmented(
    mx.Feature,
    spec=mx.FeatureSpec(
        "augmented",
        id_columns=[IMAGE_ID, "variant"],
        fields=[mx.FieldSpec("pixels", description="The image shifted by one pixel.")],
        deps=[
            mx.FeatureDep(
                Image, select=["pixel_values"], lineage=mx.Lineage.expansion(on=[IMAGE_ID])
            )
        ],
        description="Four shifted copies of every image (1:N expansion).",
    ),
):
    """One shifted copy of an image."""

    variant: str
    augmented_pixels: list[float]


class ClassSummary(
    mx.Feature,
    spec=mx.FeatureSpec(
        "class_summary",
        id_columns=["digit"],
        fields=[mx.FieldSpec("centroid", description="Mean embedding of the class.")],
        deps=[mx.FeatureDep(Embedding, lineage=mx.Lineage.aggregation(on=["digit"]))],
        description="Per digit: the mean embedding and how many images it has (N:1 aggregation).",
    ),
):
    """The mean embedding of one digit class."""

    digit: int
    centroid: list[float]
    count: int


class Caption(
    mx.Feature,
    spec=mx.FeatureSpec(
        "caption",
        id_columns=[IMAGE_ID],
        fields=[
            mx.FieldSpec("text", deps={"image": ["label"]}, description="Reads only the label.")
        ],
        deps=[mx.FeatureDep(Image, select=["digit"])],
        description="A sentence describing the image, built from its label alone.",
    ),
):
    """An English caption made from the label."""

    caption: str


FEATURES: list[type[mx.Feature]] = [Image, Normalized, Embedding, Augmented, ClassSummary, Caption]


def feature_graph() -> mx.FeatureGraph:
    """The example's feature graph.

    Example:
        >>> [k.path for k in feature_graph().topological_order()][:2]
        ['image', 'augmented']
    """
    return mx.FeatureGraph(FEATURES)


def with_code_version(
    graph: mx.FeatureGraph, feature: str, field: str, code_version: str
) -> mx.FeatureGraph:
    """A copy of `graph` where one field's code version is bumped (what editing the spec does).

    Example:
        >>> g = with_code_version(feature_graph(), "normalized", "pixels", "2")
        >>> g.spec("normalized").field("pixels").code_version
        '2'
    """
    old = graph.definition(feature)
    spec = old.spec.with_field_code_version(field, code_version)
    # Keep the typed columns: a bare FeatureSpec would forget them.
    return graph.replace(mx.FeatureDefinition(spec, old.columns, old.feature_class))
