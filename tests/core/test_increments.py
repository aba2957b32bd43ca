"""Increments: new / stale (fields, reasons) / orphaned, missing upstreams, lineage kinds."""

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core.testing import compute_increment
from tests.core.video import VALUES, bump, graph, inputs

ORDER = ["video", "crop", "face_detection", "transcript"]


def run_all(store: mx.MetadataStore, samples: pl.DataFrame) -> dict[str, mx.Increment]:
    return {
        key: compute_increment(store, key, VALUES[key], samples=samples if key == "video" else None)
        for key in ORDER
    }


# -- new / stale / orphaned -------------------------------------------------------------------


def test_first_increment_is_all_new_with_key_carried_and_provenance_columns():
    store = mx.MemoryStore(graph())
    compute_increment(store, "video", VALUES["video"], samples=inputs(3))
    inc = store.resolve_update("crop")
    assert inc.counts() == {"new": 3, "stale": 0, "orphaned": 0}
    assert inc.new.columns == [
        "sample_id",
        "path",
        C.provenance_column("audio"),
        C.provenance_column("frames"),
        C.PROVENANCE,
    ]
    assert inc.describe() == "crop: 3 new, 0 stale, 0 orphaned"
    assert inc.status is mx.IncrementStatus.OK and inc.missing_upstreams == ()
    assert not inc.is_empty


def test_stale_fields_and_reasons():
    store = mx.MemoryStore(graph())
    run_all(store, inputs(4))
    store.graph = bump(store.graph, "crop", "frames", "2")
    crop = store.resolve_update("crop")
    assert crop.stale_fields() == {"frames": {"code": 4}}
    assert crop.stale[C.STALE_FIELDS].to_list() == [["frames"]] * 4
    assert crop.stale[C.STALE_REASONS].to_list() == [["code"]] * 4
    assert store.resolve_update("face_detection").is_empty  # crop not rewritten yet
    store.write("crop", crop.to_compute().with_columns(crop_path=pl.lit("c2")))
    faces = store.resolve_update("face_detection")
    assert faces.stale_fields() == {"faces": {"upstream": 4}}
    assert store.resolve_update("transcript").is_empty


def test_several_stale_fields_on_one_row_are_aligned_with_reasons():
    store = mx.MemoryStore(graph())
    run_all(store, inputs(2))
    store.graph = bump(store.graph, "crop", "frames", "2")
    compute_increment(
        store, "video", VALUES["video"], samples=inputs(2, audio_suffix="x", changed=1)
    )
    crop = store.resolve_update("crop")
    rows = {r["sample_id"]: r for r in crop.stale.iter_rows(named=True)}
    assert rows["s0000"][C.STALE_FIELDS] == ["audio", "frames"]
    assert rows["s0000"][C.STALE_REASONS] == ["upstream", "code"]
    assert rows["s0001"][C.STALE_FIELDS] == ["frames"]
    assert crop.stale_fields() == {"audio": {"upstream": 1}, "frames": {"code": 2}}


def test_to_compute_stacks_new_and_stale():
    store = mx.MemoryStore(graph())
    run_all(store, inputs(2))
    compute_increment(
        store, "video", VALUES["video"], samples=inputs(3, audio_suffix="x", changed=1)
    )
    inc = store.resolve_update("crop")
    assert inc.counts() == {"new": 1, "stale": 1, "orphaned": 0}
    rows = inc.to_compute().sort("sample_id")
    assert rows["sample_id"].to_list() == ["s0000", "s0002"]
    assert rows[C.STALE_FIELDS].to_list() == [["audio"], None]


def test_root_samples_that_disappear_are_orphaned_then_downstream_too():
    store = mx.MemoryStore(graph())
    run_all(store, inputs(5))
    video = compute_increment(
        store, "video", VALUES["video"], samples=inputs(5).filter(pl.col("sample_id") != "s0003")
    )
    assert video.orphaned.to_dicts() == [{"sample_id": "s0003"}]
    for key in ORDER[1:]:
        inc = compute_increment(store, key, VALUES[key])
        assert inc.orphaned["sample_id"].to_list() == ["s0003"], key
        assert inc.new.is_empty() and inc.stale.is_empty()
    assert all(store.resolve_update(k).is_empty for k in ORDER[1:])


def test_second_resolve_after_writing_is_empty_and_rows_outside_increment_do_nothing():
    store = mx.MemoryStore(graph())
    first = run_all(store, inputs(3))
    assert all(inc.counts()["new"] == 3 for inc in first.values())
    assert all(inc.is_empty for inc in run_all(store, inputs(3)).values())


# -- upstream never written -------------------------------------------------------------------


def test_upstream_never_written_is_an_empty_increment_with_a_status():
    store = mx.MemoryStore(graph())
    inc = store.resolve_update("face_detection")
    assert inc.status is mx.IncrementStatus.UPSTREAM_MISSING
    assert inc.missing_upstreams == (mx.FeatureKey("crop"),)
    assert inc.is_empty and inc.counts() == {"new": 0, "stale": 0, "orphaned": 0}
    assert inc.describe() == "face_detection: upstream never written (crop); nothing to do yet"
    assert inc.new.columns == ["sample_id"] and inc.orphaned.columns == ["sample_id"]
    assert inc.to_compute().is_empty()
    assert inc.stale_fields() == {}


def test_upstream_written_but_all_deleted_orphans_everything():
    store = mx.MemoryStore(graph())
    run_all(store, inputs(3))
    store.delete("video", inputs(3).select("sample_id"))
    inc = store.resolve_update("crop")
    assert inc.status is mx.IncrementStatus.OK
    assert sorted(inc.orphaned["sample_id"]) == ["s0000", "s0001", "s0002"]


# -- aggregation (N:1) ------------------------------------------------------------------------


class Utterance(
    mx.Feature, spec=mx.FeatureSpec("utterance", id_columns=["utt_id"], fields=["audio", "text"])
):
    speaker_id: str


class Speaker(
    mx.Feature,
    spec=mx.FeatureSpec(
        "speaker",
        id_columns=["speaker_id"],
        fields=["audio"],
        deps=[mx.FeatureDep(Utterance, lineage=mx.Lineage.aggregation(on=["speaker_id"]))],
    ),
):
    n_utterances: int


class Frame(
    mx.Feature,
    spec=mx.FeatureSpec(
        "frame",
        id_columns=["utt_id", "frame"],
        fields=["audio"],
        deps=[mx.FeatureDep(Utterance, lineage=mx.Lineage.expansion(on=["utt_id"]))],
    ),
):
    t: float


def lineage_graph() -> mx.FeatureGraph:
    return mx.FeatureGraph([Utterance, Speaker, Frame])


UTTERANCES = pl.DataFrame(
    {
        "utt_id": ["u1", "u2", "u3", "u4"],
        "audio": ["a1", "a2", "a3", "a4"],
        "text": ["t1", "t2", "t3", "t4"],
        "speaker_id": ["x", "x", "y", "y"],
    }
)


def write_utterances(store: mx.MetadataStore, frame: pl.DataFrame = UTTERANCES) -> mx.Increment:
    inc = store.resolve_update("utterance", samples=frame.drop("speaker_id"))
    rows = inc.to_compute()
    if rows.height:
        store.write("utterance", rows.join(frame.select("utt_id", "speaker_id"), on="utt_id"))
    if inc.orphaned.height:
        store.delete("utterance", inc.orphaned)
    return inc


def test_aggregation_returns_one_row_per_group():
    store = mx.MemoryStore(lineage_graph())
    write_utterances(store)
    inc = store.resolve_update("speaker")
    assert sorted(inc.new["speaker_id"]) == ["x", "y"]
    assert inc.new.columns == ["speaker_id", C.provenance_column("audio"), C.PROVENANCE]
    store.write("speaker", inc.new.with_columns(n_utterances=pl.lit(2)))
    assert store.resolve_update("speaker").is_empty


@pytest.mark.parametrize(
    ("change", "stale", "orphaned"),
    [
        (
            lambda f: f.with_columns(
                pl.when(pl.col("utt_id") == "u3")
                .then(pl.lit("new"))
                .otherwise("audio")
                .alias("audio")
            ),
            ["y"],
            [],
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.col("utt_id") == "u1")
                .then(pl.lit("new"))
                .otherwise("text")
                .alias("text")
            ),
            [],
            [],
        ),
        (lambda f: f.filter(pl.col("utt_id") != "u2"), ["x"], []),
        (
            lambda f: pl.concat(
                [
                    f,
                    pl.DataFrame(
                        {"utt_id": ["u5"], "audio": ["a5"], "text": ["t5"], "speaker_id": ["y"]}
                    ),
                ]
            ),
            ["y"],
            [],
        ),
        (lambda f: f.filter(pl.col("speaker_id") != "x"), [], ["x"]),
    ],
    ids=["member-audio", "member-text-not-read", "member-removed", "member-added", "group-gone"],
)
def test_aggregation_reacts_to_members(change, stale, orphaned):
    store = mx.MemoryStore(lineage_graph())
    write_utterances(store)
    compute_increment(store, "speaker", {"n_utterances": 2})
    write_utterances(store, change(UTTERANCES))
    inc = store.resolve_update("speaker")
    assert sorted(inc.stale["speaker_id"]) == stale
    assert sorted(inc.orphaned["speaker_id"]) == orphaned
    assert inc.new.is_empty()


def test_aggregation_moving_a_member_between_groups_stales_both():
    store = mx.MemoryStore(lineage_graph())
    write_utterances(store)
    compute_increment(store, "speaker", {"n_utterances": 2})
    moved = UTTERANCES.with_columns(
        pl.when(pl.col("utt_id") == "u2")
        .then(pl.lit("y"))
        .otherwise("speaker_id")
        .alias("speaker_id")
    )
    # speaker_id is a user column of the root, so re-write u2 with its unchanged provenance.
    rows = (
        store.read("utterance")
        .filter(pl.col("utt_id") == "u2")
        .select("utt_id", C.PROVENANCE, *(C.provenance_column(f) for f in ("audio", "text")))
    )
    store.write("utterance", rows.join(moved.select("utt_id", "speaker_id"), on="utt_id"))
    assert sorted(store.resolve_update("speaker").stale["speaker_id"]) == ["x", "y"]


# -- expansion (1:N) --------------------------------------------------------------------------


def children(pairs: list[tuple[str, str]]) -> pl.DataFrame:
    ids = {"utt_id": [u for u, _ in pairs], "frame": [f for _, f in pairs]}
    return pl.DataFrame(ids, schema={"utt_id": pl.String, "frame": pl.String}).with_columns(
        t=pl.lit(0.5)
    )


def write_frames(store: mx.MetadataStore, pairs: list[tuple[str, str]]) -> mx.Increment:
    inc = store.resolve_update("frame")
    kids = children(pairs).join(inc.to_compute().select("utt_id"), on="utt_id", how="semi")
    if kids.height:
        store.write("frame", mx.stamp_children(inc.to_compute(), kids, on=["utt_id"]))
    if inc.orphaned.height:
        store.delete("frame", inc.orphaned)
    return inc


FRAMES = [("u1", "0"), ("u1", "1"), ("u2", "0"), ("u3", "0"), ("u3", "1"), ("u3", "2"), ("u4", "0")]


def test_expansion_increment_is_parent_level_and_children_inherit_provenance():
    store = mx.MemoryStore(lineage_graph())
    write_utterances(store)
    inc = write_frames(store, FRAMES)
    assert sorted(inc.new["utt_id"]) == ["u1", "u2", "u3", "u4"]
    assert "frame" not in inc.new.columns and "speaker_id" in inc.new.columns
    stored = store.read("frame")
    assert stored.height == 7
    parent = inc.new.select("utt_id", C.PROVENANCE).rename({C.PROVENANCE: "parent"})
    joined = stored.join(parent, on="utt_id")
    assert (joined[C.PROVENANCE] == joined["parent"]).all()
    assert store.resolve_update("frame").is_empty


def test_expansion_parent_change_is_one_stale_parent_row():
    store = mx.MemoryStore(lineage_graph())
    write_utterances(store)
    write_frames(store, FRAMES)
    write_utterances(
        store,
        UTTERANCES.with_columns(
            pl.when(pl.col("utt_id") == "u3").then(pl.lit("new")).otherwise("audio").alias("audio")
        ),
    )
    inc = store.resolve_update("frame")
    assert inc.stale["utt_id"].to_list() == ["u3"]
    assert inc.stale_fields() == {"audio": {"upstream": 1}}


def test_expansion_recompute_with_fewer_children_replaces_the_parent_children():
    store = mx.MemoryStore(lineage_graph())
    write_utterances(store)
    write_frames(store, FRAMES)
    write_utterances(
        store,
        UTTERANCES.with_columns(
            pl.when(pl.col("utt_id") == "u3").then(pl.lit("new")).otherwise("audio").alias("audio")
        ),
    )
    inc = store.resolve_update("frame")  # u3 now yields one child instead of three
    kids = children([("u3", "0")])
    store.write(
        "frame",
        mx.stamp_children(inc.to_compute(), kids, on=["utt_id"]),
        materialization_id="run-2",
    )
    assert store.resolve_update("frame").is_empty
    live = store.read("frame").filter(pl.col("utt_id") == "u3")
    assert live["frame"].to_list() == ["0"]
    dropped = store.read("frame", include_deleted=True).filter(
        pl.col("metaxy_deleted_at").is_not_null()
    )
    assert dropped["frame"].to_list() == ["1", "2"]
    assert dropped["metaxy_materialization_id"].to_list() == ["run-2", "run-2"]  # this write's
    others = store.read("frame").filter(pl.col("utt_id") != "u3")
    assert others.height == 4  # other parents' children are untouched


def test_expansion_children_are_orphaned_when_their_parent_disappears():
    store = mx.MemoryStore(lineage_graph())
    write_utterances(store)
    write_frames(store, FRAMES)
    write_utterances(store, UTTERANCES.filter(pl.col("utt_id") != "u3"))
    inc = store.resolve_update("frame")
    assert inc.orphaned.sort("frame").to_dicts() == [
        {"utt_id": "u3", "frame": "0"},
        {"utt_id": "u3", "frame": "1"},
        {"utt_id": "u3", "frame": "2"},
    ]
    assert inc.new.is_empty() and inc.stale.is_empty()
    write_frames(store, [])
    assert store.resolve_update("frame").is_empty
    assert store.read("frame").height == 4


def test_stamp_children_overrides_stale_child_provenance_and_rejects_strangers():
    store = mx.MemoryStore(lineage_graph())
    write_utterances(store)
    parents = store.resolve_update("frame").to_compute()
    kids = children([("u1", "0")]).with_columns(pl.lit("bogus").alias(C.PROVENANCE))
    stamped = mx.stamp_children(parents, kids, on=["utt_id"])
    assert (
        stamped[C.PROVENANCE].to_list()
        == parents.filter(pl.col("utt_id") == "u1")[C.PROVENANCE].to_list()
    )
    with pytest.raises(
        mx.WriteValidationError, match=r"1 child row\(s\) name parents outside the increment.*u9"
    ):
        mx.stamp_children(parents, children([("u9", "0")]), on=["utt_id"])


def test_composite_integer_ids():
    class Clip(mx.Feature, spec=mx.FeatureSpec("clip", id_columns=["vid", "clip"], fields=["x"])):
        vid: int
        clip: int

    class Embedding(
        mx.Feature,
        spec=mx.FeatureSpec("embedding", id_columns=["vid", "clip"], fields=["x"], deps=[Clip]),
    ):
        vid: int
        clip: int
        norm: float

    store = mx.MemoryStore(mx.FeatureGraph([Clip, Embedding]))
    samples = pl.DataFrame({"vid": [1, 1, 2], "clip": [0, 1, 0], "x": ["p", "q", "r"]})
    compute_increment(store, "clip", {}, samples=samples)
    assert compute_increment(store, "embedding", {"norm": 1.0}).counts()["new"] == 3
    changed = samples.with_columns(
        pl.when(pl.col("clip") == 1).then(pl.lit("z")).otherwise("x").alias("x")
    )
    compute_increment(store, "clip", {}, samples=changed)
    inc = store.resolve_update("embedding")
    assert inc.stale.select("vid", "clip").to_dicts() == [{"vid": 1, "clip": 1}]
    assert store.read("embedding").schema["vid"] == pl.Int64
