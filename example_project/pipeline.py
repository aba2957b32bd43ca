"""How each feature is computed from its increment, and a plain runner over a store.

Every compute function takes the feature's increment and returns the rows to write. Its
`to_compute()` holds the rows metaxy says need work (ids, the upstream columns the feature
reads, and the provenance to write); `upstream(...)` reads other upstream rows of those same
samples (the class summary reads every member of its digit groups). The Dagster definitions
and the plain runner below call the same functions.
"""

from collections.abc import Callable

import polars as pl

import metaxy_core as mx
from example_project import digits
from example_project.features import IMAGE_ID, Embedding

ComputeFn = Callable[[mx.Increment], pl.DataFrame]


def _add(rows: pl.DataFrame, computed: pl.DataFrame, on: list[str]) -> pl.DataFrame:
    """The increment's rows (ids and provenance) with the computed columns joined on."""
    keep = [c for c in rows.columns if c in on or mx.columns.is_system(c)]
    return rows.select(keep).join(computed, on=on, how="inner")


def compute_image(rows: pl.DataFrame, images: pl.DataFrame) -> pl.DataFrame:
    """Root rows: attach each image's pixels and digit to the ids metaxy says are new or stale."""
    return _add(rows, images.select(IMAGE_ID, "pixel_values", "digit"), [IMAGE_ID])


def compute_normalized(increment: mx.Increment) -> pl.DataFrame:
    """Centre and scale the pixels carried from `image`."""
    rows = increment.to_compute()
    return _add(rows, digits.normalize(rows), [IMAGE_ID])


def compute_embedding(increment: mx.Increment) -> pl.DataFrame:
    """Project the normalized pixels; carry the digit for the class summary."""
    rows = increment.to_compute()
    return _add(rows, digits.embed(rows), [IMAGE_ID])


def compute_augmented(increment: mx.Increment) -> pl.DataFrame:
    """Expand every image into its shifted variants, each stamped with its parent's provenance."""
    rows = increment.to_compute()
    return mx.stamp_children(rows, digits.augment(rows), on=[IMAGE_ID])


def compute_caption(increment: mx.Increment) -> pl.DataFrame:
    """Caption each image from its digit."""
    rows = increment.to_compute()
    return _add(rows, digits.caption(rows), [IMAGE_ID])


def compute_class_summary(increment: mx.Increment) -> pl.DataFrame:
    """Re-summarize only the digit classes in the increment, from all their embeddings."""
    rows = increment.to_compute()
    embeddings = increment.upstream(Embedding, columns=["digit", "vector"])
    return _add(rows, digits.summarize(embeddings), ["digit"])


COMPUTE: dict[str, ComputeFn] = {
    "normalized": compute_normalized,
    "embedding": compute_embedding,
    "augmented": compute_augmented,
    "caption": compute_caption,
    "class_summary": compute_class_summary,
}


def run_pipeline(store: mx.MetadataStore, images: pl.DataFrame) -> dict[str, mx.Increment]:
    """Bring every feature up to date in topological order; returns each feature's increment.

    Args:
        store: any metaxy store built on the example's graph.
        images: the current source images (`digits.load_images()`).

    Example:
        >>> store = mx.MemoryStore(feature_graph())  # doctest: +SKIP
        >>> run_pipeline(store, digits.load_images())["image"].counts()["new"]  # doctest: +SKIP
        1797
    """
    done: dict[str, mx.Increment] = {}
    for key in store.graph.topological_order():
        if store.graph.spec(key).is_root:
            increment = store.resolve_update(key, samples=digits.input_versions(images))
            rows = compute_image(increment.to_compute(), images)
        else:
            increment = store.resolve_update(key)
            rows = COMPUTE[key.path](increment)
        if rows.height:
            store.write(key, rows)
        if increment.orphaned.height:
            store.delete(key, increment.orphaned)
        done[key.path] = increment
    return done
