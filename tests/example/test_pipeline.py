"""The example pipeline on the memory and DuckDB stores: what each step recomputes."""

import polars as pl
import pytest

import metaxy_core as mx
from example_project import digits
from example_project.features import feature_graph, with_code_version
from example_project.pipeline import run_pipeline

N_IMAGES = 1797
EDITED = ["img-0000", "img-0011", "img-1796"]  # digits 0, 1 and 8


def counts(increments: dict[str, mx.Increment]) -> dict[str, dict[str, int]]:
    return {key: inc.counts() for key, inc in increments.items()}


@pytest.fixture(scope="module")
def images():
    return digits.load_images()


@pytest.fixture(params=["memory", "duckdb"])
def empty_store(request, tmp_path):
    if request.param == "memory":
        store = mx.MemoryStore(feature_graph())
    else:
        store = mx.DuckDBStore(str(tmp_path / "metaxy.duckdb"), feature_graph())
    with store:
        yield store


@pytest.fixture
def store(empty_store, images):
    run_pipeline(empty_store, images)
    return empty_store


def test_full_run_computes_every_sample(empty_store, images):
    store = empty_store
    first = run_pipeline(store, images)
    new = {key: c["new"] for key, c in counts(first).items()}
    assert new == {
        "image": N_IMAGES,
        "normalized": N_IMAGES,
        "embedding": N_IMAGES,
        "augmented": N_IMAGES,
        "caption": N_IMAGES,
        "class_summary": 10,
    }
    assert store.read("augmented").height == 4 * N_IMAGES
    summary = store.read("class_summary").sort("digit")
    assert summary["count"].sum() == N_IMAGES
    assert summary["digit"].to_list() == list(range(10))
    assert store.read("caption")["caption"][0] == "a handwritten zero"


def test_rerun_computes_nothing(store, images):
    again = run_pipeline(store, images)
    assert all(inc.is_empty for inc in again.values()), counts(again)


def test_pixel_code_bump_recomputes_only_dependents(store, images):
    store.graph = with_code_version(store.graph, "normalized", "pixels", "2")
    bumped = run_pipeline(store, images)
    assert counts(bumped) == {
        "image": {"new": 0, "stale": 0, "orphaned": 0},
        "augmented": {"new": 0, "stale": 0, "orphaned": 0},
        "caption": {"new": 0, "stale": 0, "orphaned": 0},
        "normalized": {"new": 0, "stale": N_IMAGES, "orphaned": 0},
        "embedding": {"new": 0, "stale": N_IMAGES, "orphaned": 0},
        "class_summary": {"new": 0, "stale": 10, "orphaned": 0},
    }
    assert bumped["normalized"].stale_fields() == {"pixels": {"code": N_IMAGES}}
    assert bumped["embedding"].stale_fields() == {"vector": {"upstream": N_IMAGES}}
    assert all(inc.is_empty for inc in run_pipeline(store, images).values())


def test_changed_images_recompute_only_those(store):
    edited = run_pipeline(store, digits.load_images(inverted=EDITED))
    for key in ("image", "normalized", "embedding", "augmented"):
        assert edited[key].counts() == {"new": 0, "stale": 3, "orphaned": 0}, key
        assert sorted(edited[key].stale["image_id"]) == EDITED
    assert edited["image"].stale_fields() == {"pixels": {"upstream": 3}}
    assert edited["caption"].is_empty  # reads the label only
    assert sorted(edited["class_summary"].stale["digit"]) == [0, 1, 8]
    written = store.history("augmented").group_by("image_id").len().filter(pl.col("len") > 4)
    assert sorted(written["image_id"]) == EDITED  # only their 4 variants were rewritten
