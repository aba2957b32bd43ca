"""The one conformance pack every metadata store passes.

How a store joins the pack: its test module subclasses `StoreContract` and supplies one
fixture, `store_factory`, returning `make(graph, **kw) -> MetadataStore`:

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_factory(self, tmp_path):
            def make(graph, **kw):          # kw: hash_settings=...
                return MyStore(tmp_path / "db", graph, **kw)
            return make

Every call to `make` opens a store on the SAME location, so a second call reopens what the
first one wrote (tests close the first store before reopening). `kw` is passed straight to
the store's constructor; today only `hash_settings` is used.
"""

from collections.abc import Callable

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core.stores import _incremental
from metaxy_core.testing import compute_increment
from tests.core.video import VALUES, Video, bump, graph, inputs
from tests.stores.evolution_contract import EvolutionContract

StoreFactory = Callable[..., mx.MetadataStore]
VIDEO_ORDER = ["video", "crop", "face_detection", "transcript"]


# -- small graphs for the lineage kinds -------------------------------------------------------


class Utterance(
    mx.Feature, spec=mx.FeatureSpec("utterance", id_columns=["utt_id"], fields=["audio"])
):
    speaker_id: str


class Speaker(
    mx.Feature,
    spec=mx.FeatureSpec(
        "speaker",
        id_columns=["speaker_id"],
        fields=["voice"],
        deps=[mx.FeatureDep(Utterance, lineage=mx.Lineage.aggregation(on=["speaker_id"]))],
    ),
):
    n_utts: int


class Frame(
    mx.Feature,
    spec=mx.FeatureSpec(
        "frame",
        id_columns=["sample_id", "frame_idx"],
        fields=["frames"],
        deps=[mx.FeatureDep(Video, lineage=mx.Lineage.expansion(on=["sample_id"]))],
    ),
):
    frame_idx: int


class Caption(
    mx.Feature, spec=mx.FeatureSpec("caption", id_columns=["sample_id"], fields=["text"])
):
    caption: str


class Clip(
    mx.Feature,
    spec=mx.FeatureSpec(
        "clip",
        id_columns=["sample_id"],
        fields=["clip"],
        deps=[
            mx.FeatureDep(
                Video, rename={"path": "video_path"}, filters=["video_path <> 'skip.mp4'"]
            ),
            mx.FeatureDep(Caption, optional=True),
        ],
    ),
):
    score: float


def lineage_graph() -> mx.FeatureGraph:
    return mx.FeatureGraph([Video, Utterance, Speaker, Frame, Caption, Clip])


def utterances(n: int = 6, *, changed: str | None = None) -> pl.DataFrame:
    """Utterances u0..u{n-1}, spread over speakers spk0..spk2."""
    return pl.DataFrame(
        {
            "utt_id": [f"u{i}" for i in range(n)],
            "speaker_id": [f"spk{i % 3}" for i in range(n)],
            "audio": [f"a{i}" + ("-v2" if f"u{i}" == changed else "") for i in range(n)],
        }
    )


def write_root(store: mx.MetadataStore, feature, samples: pl.DataFrame, **values) -> mx.Increment:
    """Resolve a root with `samples` and write the increment with constant user columns."""
    return compute_increment(store, feature, values, samples=samples)


def write_utterances(store: mx.MetadataStore, frame: pl.DataFrame) -> None:
    """Write the utterance root, carrying its `speaker_id` user column."""
    rows = store.resolve_update("utterance", samples=frame).to_compute()
    store.write("utterance", rows.join(frame.select("utt_id", "speaker_id"), on="utt_id"))


def materialize_video(store: mx.MetadataStore, samples: pl.DataFrame) -> dict[str, mx.Increment]:
    return {
        key: compute_increment(store, key, VALUES[key], samples=samples if key == "video" else None)
        for key in VIDEO_ORDER
    }


class StoreContract(EvolutionContract):
    """Behaviour every store shares; subclasses supply the `store_factory` fixture."""

    @pytest.fixture
    def store(self, store_factory: StoreFactory):
        with store_factory(graph()) as store:
            yield store

    @pytest.fixture
    def lstore(self, store_factory: StoreFactory):
        with store_factory(lineage_graph()) as store:
            yield store

    # -- writes and reads ---------------------------------------------------------------------

    def test_write_then_read_latest(self, store):
        assert not store.has_feature("video") and store.latest("video") is None
        inc = write_root(store, "video", inputs(5), path="v.mp4")
        assert inc.counts() == {"new": 5, "stale": 0, "orphaned": 0}
        rows = store.read("video")
        assert rows["sample_id"].to_list() == [f"s{i:04d}" for i in range(5)]
        assert rows["path"].to_list() == ["v.mp4"] * 5
        assert rows[C.PROVENANCE].null_count() == 0
        assert rows.schema["path"] == pl.String and rows.schema[C.CREATED_AT] == pl.Datetime(
            "us", "UTC"
        )
        assert store.read(
            "video", columns=["path"], filters=["sample_id = 's0001'"]
        ).to_dicts() == [{"sample_id": "s0001", "path": "v.mp4"}]

    def test_history_keeps_every_row_and_latest_wins(self, store):
        write_root(store, "video", inputs(3), path="v1.mp4")
        write_root(store, "video", inputs(3, audio_suffix="-v2", changed=2), path="v2.mp4")
        history = store.history("video")
        assert history.height == 5
        assert history.group_by("sample_id").len().sort("sample_id")["len"].to_list() == [2, 2, 1]
        assert store.read("video")["path"].to_list() == ["v2.mp4", "v2.mp4", "v1.mp4"]

    def test_created_at_carried_across_rewrites(self, store):
        write_root(store, "video", inputs(2), path="v1.mp4")
        first = store.read("video").select("sample_id", C.CREATED_AT, C.UPDATED_AT)
        write_root(store, "video", inputs(2, audio_suffix="-v2", changed=2), path="v2.mp4")
        second = store.read("video").select("sample_id", C.CREATED_AT, C.UPDATED_AT)
        assert second[C.CREATED_AT].to_list() == first[C.CREATED_AT].to_list()
        assert all(a > b for a, b in zip(second[C.UPDATED_AT], first[C.UPDATED_AT], strict=True))

    def test_soft_delete_appends_markers_and_rewrite_revives(self, store):
        write_root(store, "video", inputs(3), path="v.mp4")
        assert store.delete("video", pl.DataFrame({"sample_id": ["s0000", "s0009"]})) == 1
        assert store.read("video")["sample_id"].to_list() == ["s0001", "s0002"]
        deleted = store.read("video", include_deleted=True).filter(
            pl.col(C.DELETED_AT).is_not_null()
        )
        assert deleted["sample_id"].to_list() == ["s0000"]
        assert store.history("video").height == 4
        assert store.resolve_update("video", samples=inputs(3)).new["sample_id"].to_list() == [
            "s0000"
        ]
        write_root(store, "video", inputs(3), path="v.mp4")
        assert store.read("video").height == 3

    def test_hard_delete_removes_rows(self, store):
        write_root(store, "video", inputs(3), path="v.mp4")
        store.delete("video", pl.DataFrame({"sample_id": ["s0001"]}))
        store.delete("video", pl.DataFrame({"sample_id": ["s0001", "s0002"]}), hard=True)
        assert store.history("video")["sample_id"].to_list() == ["s0000"]
        assert store.read("video", include_deleted=True)["sample_id"].to_list() == ["s0000"]

    # -- increments: the video example ----------------------------------------------------------

    def test_video_first_run_then_nothing(self, store):
        first = materialize_video(store, inputs())
        assert {k: inc.counts()["new"] for k, inc in first.items()} == dict.fromkeys(
            VIDEO_ORDER, 100
        )
        assert all(inc.is_empty for inc in materialize_video(store, inputs()).values())

    def test_small_inputs_resolve_by_the_full_diff_and_keep_no_mark(self, store, monkeypatch):
        materialize_video(store, inputs())  # crop reads video's log and its own: 200 rows
        marks = store._log_position("crop") is not None  # SQLStore keeps no log positions
        monkeypatch.setattr(_incremental, "FULL_BELOW_ROWS", 201)
        assert [store.resolve_update("crop").resolved_by for _ in range(2)] == ["full", "full"]
        monkeypatch.setattr(_incremental, "FULL_BELOW_ROWS", 200)
        found = [store.resolve_update("crop").resolved_by for _ in range(2)]
        assert found == ["full", "watermark" if marks else "full"]

    def test_a_change_touching_most_samples_takes_the_full_diff(self, store, monkeypatch):
        monkeypatch.setattr(_incremental, "FULL_BELOW_ROWS", 0)
        materialize_video(store, inputs())
        marks = store._log_position("crop") is not None  # SQLStore keeps no log positions
        resolves = [store.resolve_update("crop").resolved_by for _ in range(2)]
        assert resolves == ["full", "watermark" if marks else "full"]
        write_root(store, "video", inputs(audio_suffix="-v2", changed=10), path="v.mp4")
        few = store.resolve_update("crop")  # 10 of 100 touched: the candidates only
        assert (few.resolved_by, few.counts()["stale"]) == ("changes" if marks else "full", 10)
        write_root(store, "video", inputs(audio_suffix="-v3", changed=100), path="v.mp4")
        most = store.resolve_update("crop")  # every sample touched: the whole diff is cheaper
        assert (most.resolved_by, most.counts()["stale"]) == ("full", 100)

    def test_video_code_bump_stales_only_readers(self, store):
        materialize_video(store, inputs())
        store.graph = bump(store.graph, "video", "audio", "2")
        seen = {}
        for key in VIDEO_ORDER:
            assert store.resolve_update("face_detection").is_empty
            seen[key] = compute_increment(
                store, key, VALUES[key], samples=inputs() if key == "video" else None
            )
        assert seen["video"].stale_fields() == {"audio": {"code": 100}}
        assert seen["crop"].stale_fields() == {"audio": {"upstream": 100}}
        assert seen["transcript"].stale_fields() == {"text": {"upstream": 100}}
        for key in ("video", "crop", "transcript"):
            assert seen[key].counts() == {"new": 0, "stale": 100, "orphaned": 0}
        assert seen["face_detection"].is_empty
        assert store.resolve_update("face_detection").is_empty

    def test_video_changed_inputs_and_orphans(self, store):
        materialize_video(store, inputs())
        changed = materialize_video(store, inputs(audio_suffix="-v2", changed=7))
        for key in ("video", "crop", "transcript"):
            assert changed[key].counts() == {"new": 0, "stale": 7, "orphaned": 0}
            assert sorted(changed[key].stale["sample_id"]) == [f"s{i:04d}" for i in range(7)]
        assert changed["face_detection"].is_empty
        store.delete("video", pl.DataFrame({"sample_id": ["s0003"]}))
        assert store.resolve_update("crop").orphaned["sample_id"].to_list() == ["s0003"]

    def test_upstream_never_written_gives_empty_increment(self, store):
        inc = store.resolve_update("crop")
        assert inc.status is mx.IncrementStatus.UPSTREAM_MISSING
        assert inc.missing_upstreams == (mx.FeatureKey("video"),)
        assert inc.is_empty

    def test_target_filters(self, store):
        write_root(store, "video", inputs(10), path="v.mp4")
        inc = store.resolve_update("crop", filters=["sample_id < 's0003'"])
        assert sorted(inc.new["sample_id"]) == ["s0000", "s0001", "s0002"]

    # -- increments: other lineage kinds and dep options ----------------------------------------

    def test_aggregation_one_row_per_group(self, lstore):
        write_utterances(lstore, utterances())
        inc = compute_increment(lstore, "speaker", {"n_utts": 2})
        assert sorted(inc.new["speaker_id"]) == ["spk0", "spk1", "spk2"]
        assert lstore.resolve_update("speaker").is_empty
        write_utterances(lstore, utterances(changed="u4"))
        inc = lstore.resolve_update("speaker")
        assert inc.stale["speaker_id"].to_list() == ["spk1"]
        assert inc.stale_fields() == {"voice": {"upstream": 1}}

    def test_increments_read_their_upstream_rows(self, lstore):
        write_utterances(lstore, utterances())
        compute_increment(lstore, "speaker", {"n_utts": 2})
        write_utterances(lstore, utterances(changed="u4"))
        members = lstore.resolve_update("speaker").upstream("utterance")
        assert members["utt_id"].to_list() == ["u1", "u4"]  # every member of the stale group
        assert set(members["speaker_id"]) == {"spk1"}
        write_root(lstore, "video", inputs(4), path="v.mp4")
        renamed = lstore.resolve_update("clip").upstream("video", columns=["path"])
        assert renamed.columns == ["sample_id", "video_path"]  # as clip sees video (rename)
        with pytest.raises(mx.SpecError, match="not an upstream of speaker"):
            lstore.resolve_update("speaker").upstream("video")
        with pytest.raises(mx.StoreError, match="built by hand"):
            mx.Increment(
                mx.FeatureKey("speaker"), pl.DataFrame(), pl.DataFrame(), pl.DataFrame()
            ).upstream("utterance")

    def test_expansion_with_stamped_children(self, lstore):
        write_root(lstore, "video", inputs(3), path="v.mp4")
        inc = lstore.resolve_update("frame")
        assert sorted(inc.new["sample_id"]) == ["s0000", "s0001", "s0002"]
        children = inc.new.select("sample_id").join(
            pl.DataFrame({"frame_idx": [0, 1]}), how="cross"
        )
        lstore.write("frame", mx.stamp_children(inc.new, children, on=["sample_id"]))
        assert lstore.read("frame").height == 6
        assert lstore.resolve_update("frame").is_empty
        write_root(
            lstore,
            "video",
            inputs(3, audio_suffix="-v2", changed=3).with_columns(
                pl.when(pl.col("sample_id") == "s0001")
                .then(pl.lit("f-new"))
                .otherwise("frames")
                .alias("frames")
            ),
            path="v.mp4",
        )
        assert lstore.resolve_update("frame").stale["sample_id"].to_list() == ["s0001"]

    def test_rename_dep_filter_and_optional_dep(self, lstore):
        rows = lstore.resolve_update("video", samples=inputs(4)).new
        path = (
            pl.when(pl.col("sample_id") == "s0003")
            .then(pl.lit("skip.mp4"))
            .otherwise(pl.lit("v.mp4"))
        )
        lstore.write("video", rows.with_columns(path.alias("path")))
        inc = lstore.resolve_update("clip")
        assert inc.status is mx.IncrementStatus.OK
        assert sorted(inc.new["sample_id"]) == ["s0000", "s0001", "s0002"]
        assert set(inc.new["video_path"]) == {"v.mp4"}
        compute_increment(lstore, "clip", {"score": 0.5})
        caption = pl.DataFrame({"sample_id": ["s0001"], "text": ["t1"]})
        write_root(lstore, "caption", caption, caption="hello")
        inc = lstore.resolve_update("clip")
        assert inc.stale["sample_id"].to_list() == ["s0001"]
        assert inc.stale_fields() == {"clip": {"upstream": 1}}

    # -- bad input never half-writes ------------------------------------------------------------

    @pytest.mark.parametrize(
        ("case", "match"),
        [
            ("unknown_feature", "nope"),
            ("missing_id", "missing id column"),
            ("null_id", "null"),
            ("duplicate_id", "share ids"),
            ("wrong_dtype", "'path' has dtype"),
            ("unknown_column", "unknown column"),
            ("root_without_provenance", "provenance"),
        ],
    )
    def test_bad_input_raises_and_writes_nothing(self, store, case, match):
        write_root(store, "video", inputs(2), path="v.mp4")
        before = store.history("video")
        good = (
            store.resolve_update("video", samples=inputs(4))
            .to_compute()
            .with_columns(path=pl.lit("x"))
        )
        bad = {
            "unknown_feature": ("nope", good),
            "missing_id": ("video", good.drop("sample_id")),
            "null_id": (
                "video",
                good.with_columns(
                    sample_id=pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise("sample_id")
                ),
            ),
            "duplicate_id": ("video", pl.concat([good, good.head(1)])),
            "wrong_dtype": ("video", good.with_columns(path=pl.lit(3))),
            "unknown_column": ("video", good.with_columns(extra=pl.lit(1))),
            "root_without_provenance": ("video", good.select("sample_id", "path")),
        }
        feature, rows = bad[case]
        with pytest.raises(mx.MetaxyError, match=match):
            store.write(feature, rows)
        assert store.history("video").equals(before)

    def test_root_resolve_without_samples_is_refused(self, store):
        with pytest.raises(mx.WriteValidationError, match="samples="):
            store.resolve_update("video")

    # -- hash settings, snapshots, batches, copies ----------------------------------------------

    def test_hash_settings_recorded_and_mismatch_refused(self, store_factory):
        with store_factory(graph(), hash_settings=mx.HashSettings("md5", length=12)) as store:
            write_root(store, "video", inputs(2), path="v.mp4")
            assert len(store.read("video")[C.PROVENANCE][0]) == 12
        with store_factory(graph()) as store:
            assert store.hash_settings == mx.HashSettings("md5", length=12)
        with pytest.raises(mx.HashSettingsMismatchError, match=r"md5/12.*sha256/full"):
            store_factory(graph(), hash_settings=mx.HashSettings("sha256"))

    def test_reopen_sees_everything(self, store_factory):
        with store_factory(graph()) as store:
            materialize_video(store, inputs(5))
        with store_factory(graph()) as store:
            assert store.read("transcript").height == 5
            assert store.resolve_update("crop").is_empty

    def test_graph_snapshots(self, store):
        assert store.graph_snapshots().is_empty()
        first = store.push_graph_snapshot(tags={"git": "abc"})
        store.graph = bump(store.graph, "video", "audio", "2")
        second = store.push_graph_snapshot()
        snaps = store.graph_snapshots()
        assert snaps["project_version"].to_list() == [first, second] and first != second
        assert snaps["tags"][0] == '{"git": "abc"}'
        assert mx.FeatureGraph.from_snapshot(snaps["snapshot"][1]).project_version == second

    def test_batch_manifests(self, store):
        store.write_batch("b1", "video", pl.DataFrame({"sample_id": ["s1", "s2"]}), kind="new")
        store.write_batch("b2", "video", pl.DataFrame({"sample_id": ["s3"]}), kind="stale")
        store.set_batch_status("b1", "done")
        assert store.batches()["status"].to_list() == ["done", "pending"]
        assert store.batches(status="pending")["batch_key"].to_list() == ["b2"]
        assert store.batch_ids("b1")["sample_id"].to_list() == ["s1", "s2"]
        with pytest.raises(mx.MetaxyError, match="nope"):
            store.read_batch("nope")

    def test_attempt_records_count_quarantine_skip_and_release(self, store):
        assert store.sample_attempts("crop").is_empty() and store.quarantined("crop").is_empty()
        write_root(store, "video", inputs(3), path="v.mp4")
        todo = store.resolve_update("crop").to_compute()
        s0, s1, s2 = (todo.filter(pl.col("sample_id") == f"s000{i}") for i in range(3))
        for _ in range(2):
            store.record_attempts("crop", pl.concat([s0, s1]), status="failed", reason="boom")
        short = s2.with_columns(reason=pl.lit("too short"))  # a reason per sample
        store.record_attempts("crop", short, status="skipped", reason="other", batch_key="b1")
        # a new provenance starts the count again
        moved = s1.with_columns(pl.lit("other", pl.String).alias(C.PROVENANCE))
        store.record_attempts("crop", moved, status="failed", reason="bang")
        store.record_attempts("crop", s0, status="quarantined")
        got = store.sample_attempts("crop").sort("sample_id")
        assert got.select("sample_id", "attempts", "status", "reason").rows() == [
            ("s0000", 2, "quarantined", "boom"),
            ("s0001", 1, "failed", "bang"),
            ("s0002", 0, "skipped", "too short"),
        ]
        assert got["batch_key"].to_list() == [None, None, "b1"]
        assert got.schema["sample_id"] == pl.String and got.schema["attempts"] == pl.Int64
        assert store.quarantined("crop")["sample_id"].to_list() == ["s0000"]
        assert store.sample_attempts("video").is_empty()  # records are per feature
        assert store.release_quarantine("crop", pl.DataFrame({"sample_id": ["s0001"]})) == 0
        assert store.release_quarantine("crop") == 1
        assert store.quarantined("crop").is_empty()
        store.record_attempts("crop", s0, status="quarantined")
        assert store.release_quarantine("crop", ["s0000"]) == 1  # bare ids of a one-column key
        store.record_attempts("crop", s0, status="failed", reason="again")
        assert store.sample_attempts("crop", status="failed")["attempts"].to_list() == [1, 1]
        with pytest.raises(mx.MetaxyError, match="unknown status 'lost'"):
            store.record_attempts("crop", s0, status="lost")

    def test_copy_to_and_from_memory_with_filters(self, store):
        materialize_video(store, inputs(6))
        target = mx.MemoryStore(graph(), hash_settings=store.hash_settings)
        copied = store.copy_to(target, features=["video", "crop"], filters=["sample_id < 's0002'"])
        assert copied == {"video": 2, "crop": 2}
        assert target.read("crop")["sample_id"].to_list() == ["s0000", "s0001"]
        assert target.read("crop").equals(store.read("crop", filters=["sample_id < 's0002'"]))
        source = mx.MemoryStore(graph(), hash_settings=store.hash_settings)
        materialize_video(source, inputs(3, audio_suffix="-x", changed=3))
        source.copy_to(store, features=["video"])
        assert store.history("video").height == 9
        assert store.resolve_update("crop").counts() == {"new": 0, "stale": 3, "orphaned": 0}

    def test_copy_filters_choose_samples_by_their_latest_row(self, store):
        materialize_video(store, inputs(3))
        store.write("crop", store.read("crop").head(1).with_columns(crop_path=pl.lit("new.mp4")))
        store.delete("crop", pl.DataFrame({"sample_id": ["s0002"]}))
        target = mx.MemoryStore(graph(), hash_settings=store.hash_settings)
        store.copy_to(target, features=["crop"], filters=["crop_path = 'c.mp4'"])
        # s0000 was c.mp4 once but is new.mp4 now: not chosen; s0002's latest row is a marker
        # that still says c.mp4, so it is copied with its history and stays deleted.
        assert target.read("crop")["sample_id"].to_list() == ["s0001"]
        assert target.history("crop")["sample_id"].to_list() == ["s0001", "s0002", "s0002"]

    def test_root_samples_with_bad_dtypes_are_refused(self, store):
        nested = inputs(2).with_columns(pl.lit([1], pl.List(pl.Int64)).alias("audio"))
        with pytest.raises(mx.WriteValidationError, match=r"input column 'audio' has dtype List"):
            store.resolve_update("video", samples=nested)
        numeric_ids = inputs(2).with_columns(pl.Series("sample_id", [1, 2]))
        with pytest.raises(mx.WriteValidationError, match=r"sample_id.*expected String"):
            store.resolve_update("video", samples=numeric_ids)

    def test_a_column_keeps_its_stored_type(self, store_factory):
        spec = mx.FeatureSpec("notes", id_columns=["sample_id"], fields=["text"])
        samples = pl.DataFrame({"sample_id": ["a", "b"], "text": ["t1", "t2"]})
        with store_factory(mx.FeatureGraph([spec])) as store:
            rows = store.resolve_update("notes", samples=samples).new
            store.write("notes", rows.with_columns(score=pl.lit(10)))
            history = store.history("notes")
            with pytest.raises(mx.WriteValidationError, match="'score' is String"):
                store.write("notes", rows.with_columns(score=pl.lit("high")))
            assert store.history("notes").equals(history)

    def test_required_class_columns_must_be_written(self, store):
        rows = store.resolve_update("video", samples=inputs(2)).new
        with pytest.raises(mx.WriteValidationError, match=r"\['path'\].*Video declares"):
            store.write("video", rows)
        assert not store.has_feature("video")
