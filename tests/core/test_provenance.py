"""Sample provenance: roots, field parents, data-version overrides, hash settings, edges."""

import hashlib
import json

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core.testing import compute_increment
from tests.core.video import bump, graph, inputs


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


# The documented layout of hash inputs (`metaxy_core.versioning._provenance`), rebuilt here
# independently of the engines.
def head(key: str, field: str, code_version: str = "1") -> str:
    """H: a field's fixed head, 16 hex characters of a sha256 of its JSON-listed definition."""
    text = json.dumps(
        ["field provenance", key, field, code_version], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def field_input(key: str, field: str, *parents: tuple[str, str, str]) -> str:
    """H, then `|<upstream>/<field>=<data version>` per parent field."""
    return head(key, field) + "".join(f"|{up}/{g}={dv}" for up, g, dv in parents)


def root_input(key: str, field: str, text: str | None) -> str:
    """H, then `=<input text>` unless the input is null."""
    return head(key, field) + ("" if text is None else "=" + text)


def by_field(*pairs: str) -> str:
    """`|<field>=<value>` per field: a sample's provenance or data version input."""
    return "".join(f"|{f}={v}" for f, v in zip(pairs[::2], pairs[1::2], strict=True))


def root_rows(store: mx.MetadataStore, samples: pl.DataFrame, **values) -> mx.Increment:
    return compute_increment(store, "video", values or {"path": "v.mp4"}, samples=samples)


# -- the row formula, checked against an independent hash ----------------------------------------


def test_root_provenance_folds_code_version_and_input_md5():
    store = mx.MemoryStore(graph(), hash_settings=mx.HashSettings("md5"))
    row = store.resolve_update("video", samples=inputs(1)).new.row(0, named=True)
    audio = md5(root_input("video", "audio", "a0"))
    frames = md5(root_input("video", "frames", "f0"))
    assert row[C.provenance_column("audio")] == audio
    assert row[C.provenance_column("frames")] == frames
    assert row[C.PROVENANCE] == md5(by_field("audio", audio, "frames", frames))


def test_downstream_provenance_reads_exactly_the_parent_fields_md5():
    store = mx.MemoryStore(graph(), hash_settings=mx.HashSettings("md5"))
    root_rows(store, inputs(1))
    video = store.read("video").row(0, named=True)
    face_inputs = None
    crop = compute_increment(store, "crop", {"crop_path": "c"}).new.row(0, named=True)
    dv = {f: video[C.data_version_column(f)] for f in ("audio", "frames")}
    assert dv == {
        f: video[C.provenance_column(f)] for f in dv
    }  # no override: data version = provenance
    assert crop[C.provenance_column("audio")] == md5(
        field_input("crop", "audio", ("video", "audio", dv["audio"]))
    )
    assert crop[C.provenance_column("frames")] == md5(
        field_input("crop", "frames", ("video", "frames", dv["frames"]))
    )
    stored_crop = store.read("crop").row(0, named=True)
    face_inputs = md5(
        field_input(
            "face_detection",
            "faces",
            ("crop", "frames", stored_crop[C.data_version_column("frames")]),
        )
    )
    faces = store.resolve_update("face_detection").new.row(0, named=True)
    assert faces[C.provenance_column("faces")] == face_inputs
    transcript = store.resolve_update("transcript").new.row(0, named=True)
    assert transcript[C.provenance_column("text")] == md5(
        field_input("transcript", "text", ("video", "audio", dv["audio"]))
    )


def test_sample_data_version_hashes_sorted_field_data_versions():
    store = mx.MemoryStore(graph(), hash_settings=mx.HashSettings("md5"))
    root_rows(store, inputs(1))
    row = store.read("video").row(0, named=True)
    expected = md5(
        by_field(
            "audio",
            row[C.data_version_column("audio")],
            "frames",
            row[C.data_version_column("frames")],
        )
    )
    assert row[C.DATA_VERSION] == expected


# -- hash settings ----------------------------------------------------------------------------


# xxh3_64 has no independent implementation in this environment: its values are pinned.
# Provenance format 3 (a hashed head, plain parts) changed them from format 2's framed parts.
ROOT_AUDIO_S0000 = root_input("video", "audio", "a0")
XXH3_ROOT_S0000 = ("16155301083548009511", "18000204786513529256", "5509302752595084168")


@pytest.mark.parametrize(
    ("settings", "check"),
    [
        (mx.HashSettings(), lambda v: v == XXH3_ROOT_S0000),
        (
            mx.HashSettings("xxh3_64", length=8),
            lambda v: v[:2] == tuple(x[:8] for x in XXH3_ROOT_S0000[:2]),
        ),
        (mx.HashSettings("md5"), lambda v: v[0] == md5(ROOT_AUDIO_S0000)),
        (mx.HashSettings("md5", length=10), lambda v: v[0] == md5(ROOT_AUDIO_S0000)[:10]),
        (
            mx.HashSettings("sha256"),
            lambda v: v[0] == hashlib.sha256(ROOT_AUDIO_S0000.encode()).hexdigest(),
        ),
        (
            mx.HashSettings("sha256", length=12),
            lambda v: v[0] == hashlib.sha256(ROOT_AUDIO_S0000.encode()).hexdigest()[:12],
        ),
    ],
    ids=["xxh3", "xxh3/8", "md5", "md5/10", "sha256", "sha256/12"],
)
def test_hash_settings_shape_every_value(settings, check):
    store = mx.MemoryStore(graph(), hash_settings=settings)
    new = store.resolve_update("video", samples=inputs(1)).new
    values = new.select(
        C.provenance_column("audio"), C.provenance_column("frames"), C.PROVENANCE
    ).row(0)
    assert check(values), values
    if settings.length:
        assert all(len(v) == settings.length for v in values)


def test_hash_settings_validation():
    assert mx.HashSettings("md5", length=16).describe() == "md5/16"
    assert mx.HashSettings.parse("md5/16") == mx.HashSettings("md5", length=16)
    assert mx.HashSettings.parse(mx.HashSettings().describe()) == mx.HashSettings()
    with pytest.raises(
        mx.SpecError, match="Unknown hash algorithm 'crc32'; use one of: xxh3_64, md5, sha256"
    ):
        mx.HashSettings("crc32")
    with pytest.raises(mx.SpecError, match=r"out of range for md5: use 8\.\.32"):
        mx.HashSettings("md5", length=40)
    with pytest.raises(mx.SpecError, match="out of range"):
        mx.HashSettings("sha256", length=4)
    for recorded in ("crc32/full", "md5/sixteen"):  # unreadable settings found in a store
        with pytest.raises(mx.SpecError, match=r"crc32|'md5/sixteen'"):
            mx.HashSettings.parse(recorded)


def test_different_algorithms_give_different_provenance():
    values = set()
    for settings in (mx.HashSettings(), mx.HashSettings("md5"), mx.HashSettings("sha256")):
        values.add(
            mx.MemoryStore(graph(), hash_settings=settings)
            .resolve_update("video", samples=inputs(1))
            .new[C.PROVENANCE][0]
        )
    assert len(values) == 3


# -- roots --------------------------------------------------------------------------------------


def test_root_input_change_moves_only_that_field_of_that_sample():
    store = mx.MemoryStore(graph())
    before = store.resolve_update("video", samples=inputs(5)).new
    after = store.resolve_update("video", samples=inputs(5, audio_suffix="x", changed=2)).new
    audio, frames = C.provenance_column("audio"), C.provenance_column("frames")
    assert (before[audio] != after[audio]).to_list() == [True, True, False, False, False]
    assert before[frames].to_list() == after[frames].to_list()
    assert (before[C.PROVENANCE] != after[C.PROVENANCE]).to_list() == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_root_code_version_is_folded_into_its_provenance():
    store = mx.MemoryStore(graph())
    before = store.resolve_update("video", samples=inputs(3)).new
    store.graph = bump(store.graph, "video", "frames", "7")
    after = store.resolve_update("video", samples=inputs(3)).new
    assert (
        before[C.provenance_column("audio")].to_list()
        == after[C.provenance_column("audio")].to_list()
    )
    assert not set(before[C.provenance_column("frames")]) & set(
        after[C.provenance_column("frames")]
    )


def test_root_inputs_may_be_any_type_and_null():
    samples = pl.DataFrame({"sample_id": ["a", "b"], "audio": [1, None], "frames": [1.5, 2.5]})
    new = mx.MemoryStore(graph()).resolve_update("video", samples=samples).new
    assert new[C.PROVENANCE].null_count() == 0


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (None, "video is a root: pass samples="),
        (
            pl.DataFrame({"sample_id": ["a"], "audio": ["x"]}),
            r"missing input column\(s\) \['frames'\]",
        ),
        (
            pl.DataFrame({"audio": ["x"], "frames": ["y"]}),
            r"missing id column\(s\) \['sample_id'\]",
        ),
        (
            pl.DataFrame({"sample_id": ["a", "a"], "audio": ["x", "y"], "frames": ["y", "z"]}),
            "share ids",
        ),
        (
            pl.DataFrame({"sample_id": ["a", None], "audio": ["x", "y"], "frames": ["y", "z"]}),
            "null",
        ),
        ("not a frame", "expected a dataframe"),
    ],
)
def test_bad_root_samples(samples, message):
    with pytest.raises(mx.WriteValidationError, match=message):
        mx.MemoryStore(graph()).resolve_update("video", samples=samples)


# -- data-version overrides ---------------------------------------------------------------------


def override_graph() -> mx.FeatureGraph:
    """video -> crop{audio, frames} -> mix{mix <- crop.audio}."""
    video = mx.FeatureSpec("video", id_columns=["sample_id"], fields=["audio", "frames"])
    crop = mx.FeatureSpec(
        "crop", id_columns=["sample_id"], fields=["audio", "frames"], deps=["video"]
    )
    mix = mx.FeatureSpec(
        "mix",
        id_columns=["sample_id"],
        fields=[mx.FieldSpec("mix", deps={"crop": ["audio"]})],
        deps=["crop"],
    )
    return mx.FeatureGraph([video, crop, mix])


def write_crop_with_content_hash(store: mx.MetadataStore, content: str) -> mx.Increment:
    inc = store.resolve_update("crop")
    rows = inc.to_compute()
    if rows.height:
        store.write(
            "crop", rows.with_columns(pl.lit(content).alias(C.data_version_column("audio")))
        )
    return inc


def test_identical_recomputed_output_stops_propagation():
    store = mx.MemoryStore(override_graph())
    compute_increment(store, "video", {}, samples=inputs(4))
    write_crop_with_content_hash(store, "same-bytes")
    compute_increment(store, "mix", {})
    stored = store.read("crop")
    assert stored[C.data_version_column("audio")].to_list() == ["same-bytes"] * 4
    assert (
        stored[C.data_version_column("frames")].to_list()
        == stored[C.provenance_column("frames")].to_list()
    )

    compute_increment(store, "video", {}, samples=inputs(4, audio_suffix="v2", changed=2))
    crop_inc = write_crop_with_content_hash(store, "same-bytes")  # recomputed: identical output
    assert crop_inc.stale_fields() == {"audio": {"upstream": 2}}
    assert store.resolve_update("mix").is_empty

    third = inputs(4, audio_suffix="v2", changed=2).with_columns(
        pl.when(pl.col("sample_id") == "s0000")
        .then(pl.lit("new-audio"))
        .otherwise(pl.col("audio"))
        .alias("audio")
    )
    compute_increment(store, "video", {}, samples=third)
    write_crop_with_content_hash(store, "other-bytes")  # now the output really differs
    mix = store.resolve_update("mix")
    assert mix.counts() == {"new": 0, "stale": 1, "orphaned": 0}
    assert mix.stale_fields() == {"mix": {"upstream": 1}}


def test_override_with_null_falls_back_to_provenance():
    store = mx.MemoryStore(override_graph())
    compute_increment(store, "video", {}, samples=inputs(2))
    rows = store.resolve_update("crop").new.with_columns(
        pl.Series(C.data_version_column("audio"), ["hash", None], pl.String)
    )
    store.write("crop", rows)
    stored = store.read("crop")
    assert stored[C.data_version_column("audio")][0] == "hash"
    assert stored[C.data_version_column("audio")][1] == stored[C.provenance_column("audio")][1]


# -- edge options: optional, rename, filters ----------------------------------------------------


def options_graph(*, dep_filters=(), optional=True) -> mx.FeatureGraph:
    class Clip(mx.Feature, spec=mx.FeatureSpec("clip", id_columns=["sample_id"], fields=["audio"])):
        path: str
        duration: float

    class Label(
        mx.Feature, spec=mx.FeatureSpec("label", id_columns=["sample_id"], fields=["label"])
    ):
        path: str

    class Enriched(
        mx.Feature,
        spec=mx.FeatureSpec(
            "enriched",
            id_columns=["sample_id"],
            fields=["audio", "label"],
            deps=[
                mx.FeatureDep(Clip, rename={"path": "clip_path"}, filters=dep_filters),
                mx.FeatureDep(Label, rename={"path": "label_path"}, optional=optional),
            ],
        ),
    ):
        note: str

    return mx.FeatureGraph([Clip, Label, Enriched])


def clips(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {"sample_id": [f"s{i}" for i in range(n)], "audio": [f"a{i}" for i in range(n)]}
    )


def write_clips(store, n, durations):
    """Write clips with the given durations (user columns only: provenance stays the same)."""
    provenance = [C.PROVENANCE, C.provenance_column("audio")]
    if store.has_feature("clip"):
        rows = store.read("clip").select("sample_id", *provenance)
    else:
        rows = store.resolve_update("clip", samples=clips(n)).new
    durations = pl.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "duration": durations})
    store.write(
        "clip", rows.join(durations, on="sample_id").with_columns(path=pl.col("sample_id") + ".wav")
    )


def test_optional_dep_is_a_left_join():
    store = mx.MemoryStore(options_graph())
    write_clips(store, 3, [1.0, 2.0, 3.0])
    inc = store.resolve_update("enriched")  # label never written: optional, so not missing
    assert inc.status is mx.IncrementStatus.OK
    assert sorted(inc.new["sample_id"]) == ["s0", "s1", "s2"]
    assert inc.new["label_path"].null_count() == 3
    store.write("enriched", inc.new.with_columns(note=pl.lit("n")))

    labels = pl.DataFrame({"sample_id": ["s1"], "label": ["cat"]})
    store.write(
        "label",
        store.resolve_update("label", samples=labels).new.with_columns(path=pl.lit("l.txt")),
    )
    inc = store.resolve_update("enriched")
    assert inc.stale["sample_id"].to_list() == ["s1"]
    # Default mapping: clip has no "label" field and label has no "audio" field, so each
    # field of enriched reads all fields of the other upstream: both move.
    assert inc.stale_fields() == {"audio": {"upstream": 1}, "label": {"upstream": 1}}
    assert inc.stale["label_path"].to_list() == ["l.txt"]


def test_required_dep_is_an_inner_join():
    store = mx.MemoryStore(options_graph(optional=False))
    write_clips(store, 3, [1.0, 2.0, 3.0])
    assert store.resolve_update("enriched").status is mx.IncrementStatus.UPSTREAM_MISSING
    labels = pl.DataFrame({"sample_id": ["s1"], "label": ["cat"]})
    store.write(
        "label",
        store.resolve_update("label", samples=labels).new.with_columns(path=pl.lit("l.txt")),
    )
    assert store.resolve_update("enriched").new["sample_id"].to_list() == ["s1"]


def test_rename_carries_upstream_columns_under_new_names():
    store = mx.MemoryStore(options_graph())
    write_clips(store, 2, [1.0, 2.0])
    new = store.resolve_update("enriched").new.sort("sample_id")
    assert new["clip_path"].to_list() == ["s0.wav", "s1.wav"]
    assert new["duration"].to_list() == [1.0, 2.0]
    assert "path" not in new.columns


def test_dep_filters_drop_upstream_rows_and_orphan_their_samples():
    store = mx.MemoryStore(options_graph(dep_filters=["duration > 1.5"]))
    write_clips(store, 3, [1.0, 2.0, 3.0])
    inc = store.resolve_update("enriched")
    assert sorted(inc.new["sample_id"]) == ["s1", "s2"]
    store.write("enriched", inc.new.with_columns(note=pl.lit("n")))
    write_clips(store, 3, [1.0, 1.0, 3.0])  # s1 no longer passes the filter
    inc = store.resolve_update("enriched")
    assert inc.orphaned["sample_id"].to_list() == ["s1"]
    assert inc.new.is_empty() and inc.stale.is_empty()


def test_filters_apply_after_rename():
    store = mx.MemoryStore(options_graph(dep_filters=["clip_path = 's2.wav'"]))
    write_clips(store, 3, [1.0, 2.0, 3.0])
    assert store.resolve_update("enriched").new["sample_id"].to_list() == ["s2"]


def test_bad_filter_is_a_spec_error_when_the_dep_is_built():
    with pytest.raises(
        mx.SpecError, match=r"Dep on clip: Filter 'duration >>>> \(' does not parse"
    ):
        options_graph(dep_filters=["duration >>>> ("])


def test_target_filters_restrict_the_increment():
    store = mx.MemoryStore(options_graph())
    write_clips(store, 4, [1.0, 2.0, 3.0, 4.0])
    inc = store.resolve_update("enriched", filters=["duration >= 3"])
    assert sorted(inc.new["sample_id"]) == ["s2", "s3"]
    store.write("enriched", inc.new.with_columns(note=pl.lit("n")))
    # Samples outside the filter are neither new nor orphaned for a filtered resolve.
    inc = store.resolve_update("enriched", filters=["duration >= 3"])
    assert inc.is_empty
    assert sorted(store.resolve_update("enriched").new["sample_id"]) == ["s0", "s1"]


def test_target_filters_on_ids_scope_orphans_too():
    store = mx.MemoryStore(options_graph())
    write_clips(store, 3, [1.0, 2.0, 3.0])
    compute_increment(store, "enriched", {"note": "n"})
    store.delete("clip", pl.DataFrame({"sample_id": ["s0", "s2"]}))
    assert store.resolve_update("enriched", filters=["sample_id = 's2'"]).orphaned[
        "sample_id"
    ].to_list() == ["s2"]
    assert sorted(store.resolve_update("enriched").orphaned["sample_id"]) == ["s0", "s2"]
    # Orphans have no upstream row to test "duration" on: they are reported, not hidden.
    inc = store.resolve_update("enriched", filters=["duration > 2.5"])
    assert sorted(inc.orphaned["sample_id"]) == ["s0", "s2"]
    assert inc.new.is_empty() and inc.stale.is_empty()


def test_target_filter_on_unknown_column_is_a_spec_error():
    store = mx.MemoryStore(options_graph())
    write_clips(store, 1, [1.0])
    with pytest.raises(
        mx.SpecError, match=r"unknown column\(s\) \['nope'\]; available: .*'clip_path'"
    ):
        store.resolve_update("enriched", filters=["nope > 1"])


# -- null parents and unambiguous composition --------------------------------------------------


def abc_graph(b_fields: list[str]) -> mx.FeatureGraph:
    """a{x} -> b{b_fields} -> c{y}; c.y reads every field of b (b has no field y)."""
    return mx.FeatureGraph(
        [
            mx.FeatureSpec("a", id_columns=["id"], fields=["x"]),
            mx.FeatureSpec("b", id_columns=["id"], fields=b_fields, deps=["a"]),
            mx.FeatureSpec("c", id_columns=["id"], fields=["y"], deps=["b"]),
        ]
    )


def test_a_field_added_upstream_moves_nothing_until_the_upstream_is_rewritten():
    store = mx.MemoryStore(abc_graph(["x"]))
    compute_increment(store, "a", {}, samples=pl.DataFrame({"id": ["1", "2"], "x": ["v1", "v2"]}))
    compute_increment(store, "b", {})
    compute_increment(store, "c", {})
    stored = store.read("c").sort("id")[C.provenance_column("y")]

    store.graph = abc_graph(["x", "z"])  # b's rows have no data version for z yet: null
    inc = store.resolve_update("c")  # expected provenance == stored, field by field
    assert inc.is_empty, inc.describe()
    # b itself has work to do: its new field z.
    b = store.resolve_update("b")
    assert b.stale_fields() and set(b.stale_fields()) == {"z"}
    compute_increment(store, "b", {})

    inc = store.resolve_update("c")
    assert inc.counts() == {"new": 0, "stale": 2, "orphaned": 0}
    assert inc.stale_fields() == {"y": {"upstream": 2}}
    assert not set(inc.stale.sort("id")[C.provenance_column("y")]) & set(stored)


def test_a_missing_optional_parent_differs_from_an_empty_data_version():
    video = mx.FeatureSpec("video", id_columns=["sample_id"], fields=["audio"])
    label = mx.FeatureSpec("label", id_columns=["sample_id"], fields=["label"])
    both = mx.FeatureSpec(
        "both",
        id_columns=["sample_id"],
        fields=["audio"],
        deps=["video", mx.FeatureDep("label", optional=True)],
    )
    store = mx.MemoryStore(mx.FeatureGraph([video, label, both]))
    samples = pl.DataFrame({"sample_id": ["s1", "s2"], "audio": ["a", "a"]})
    compute_increment(store, "video", {}, samples=samples)
    labels = pl.DataFrame({"sample_id": ["s2"], "label": ["l"]})
    rows = store.resolve_update("label", samples=labels).new
    store.write("label", rows.with_columns(pl.lit("").alias(C.data_version_column("label"))))
    new = store.resolve_update("both").new.sort("sample_id")
    # s1 has no label row (left out); s2's label has the empty data version ("|label/label=").
    assert new[C.provenance_column("audio")].n_unique() == 2


@pytest.mark.parametrize("kind", ["memory", "duckdb", "delta"])
def test_root_inputs_of_every_dtype_have_one_text_and_null_is_not_empty(kind, tmp_path):
    import datetime as dt
    from decimal import Decimal

    g = mx.FeatureGraph([mx.FeatureSpec("r", id_columns=["id"], fields=["v"])])
    settings = mx.HashSettings("md5")
    store = {
        "memory": lambda: mx.MemoryStore(g, hash_settings=settings),
        "duckdb": lambda: mx.DuckDBStore(tmp_path / "m.duckdb", g, hash_settings=settings),
        "delta": lambda: mx.DeltaStore(tmp_path / "delta", g, hash_settings=settings),
    }[kind]()

    def audio_of(values: pl.Series) -> list[str]:
        samples = pl.DataFrame({"id": [str(i) for i in range(len(values))], "v": values})
        new = store.resolve_update("r", samples=samples).new.sort("id")
        return new[C.provenance_column("v")].to_list()

    def text(t: str | None) -> str:
        return md5(root_input("r", "v", t))

    cases = [
        (pl.Series(["a", "", None]), ["a", "", None]),
        (pl.Series([-3, 7], dtype=pl.Int8), ["-3", "7"]),
        (pl.Series([2**64 - 1], dtype=pl.UInt64), [str(2**64 - 1)]),
        (pl.Series([True, False]), ["true", "false"]),
        (
            pl.Series([0.1, -0.0, 0.0, float("nan")]),
            ["4591870180066957722", "0", "0", "9221120237041090560"],
        ),
        (pl.Series([1e20], dtype=pl.Float32), [str(0x4415AF1D80000000)]),
        (pl.Series([b"\x00\xff"]), ["00ff"]),
        (pl.Series([dt.date(1969, 12, 31)]), ["-1"]),
        (pl.Series([dt.datetime(1970, 1, 1, 0, 0, 1)], dtype=pl.Datetime("ns")), ["1000000"]),
        (
            pl.Series([dt.datetime(1970, 1, 1, 5, 30, tzinfo=dt.UTC)]).dt.convert_time_zone(
                "Asia/Kolkata"
            ),
            ["19800000000"],
        ),
        (pl.Series([Decimal("-0.50")], dtype=pl.Decimal(5, 2)), ["-0.50"]),
        (pl.Series([None, None], dtype=pl.Null), [None, None]),
    ]
    for values, texts in cases:
        assert audio_of(values) == [text(t) for t in texts], values.dtype


def test_ids_without_one_text_on_every_store_are_refused_at_definition():
    spec = mx.FeatureSpec("a", id_columns=["k"], fields=["x"])
    for dtype, reason in [
        (pl.Float64(), "floats compare unreliably"),
        (pl.UInt32(), "no unsigned integers"),
        (pl.Datetime("ns"), r"declare Datetime\('us', 'UTC'\)"),
        (pl.Datetime("us", "Asia/Kolkata"), "keep zoned datetimes in UTC"),
        (pl.Binary(), "hex text"),
        (pl.List(pl.String), "no canonical text"),
    ]:
        with pytest.raises(mx.SpecError, match=rf"Feature a: id column 'k' has dtype .*{reason}"):
            mx.FeatureDefinition(spec, {"k": dtype})

    class Scored(mx.Feature, spec=mx.FeatureSpec("scored", id_columns=["score"], fields=["x"])):
        score: float

    with pytest.raises(mx.SpecError, match="id column 'score' has dtype Float64"):
        mx.FeatureGraph([Scored])
    for dtype in (
        pl.Int8,
        pl.Int64(),
        pl.Boolean(),
        pl.Decimal(10, 2),
        pl.Date(),
        pl.Datetime("us", "UTC"),
    ):
        mx.FeatureDefinition(spec, {"k": dtype})


def test_a_store_written_in_an_older_provenance_format_is_refused(tmp_path):
    from metaxy_core.stores._system_tables import SETTINGS_TABLE

    for record, fmt in [("md5/full", "1"), ("md5/full/p2", "2")]:  # format 1 wrote no marker
        with mx.DuckDBStore(tmp_path / f"p{fmt}.duckdb", graph()) as store:
            store._append(SETTINGS_TABLE, pl.DataFrame({"hash": [record]}))
        with pytest.raises(
            mx.HashSettingsMismatchError, match=rf"'{record}'.*format {fmt}.*format 3"
        ):
            mx.DuckDBStore(tmp_path / f"p{fmt}.duckdb", graph())
    with mx.DuckDBStore(tmp_path / "new.duckdb", graph()) as store:
        compute_increment(store, "video", {"path": "p"}, samples=inputs(1))
    with mx.DuckDBStore(tmp_path / "new.duckdb", graph()) as store:
        assert store.hash_settings == mx.HashSettings()


@pytest.mark.parametrize("kind", ["memory", "duckdb", "delta"])
def test_overrides_are_kept_as_written_unless_they_hold_the_part_end(kind, tmp_path):
    """Any text without `|` is kept (non-ASCII, quotes, NUL, framing-like); text with it is
    stored as the hash of `override:` and the text, alike on every store."""
    kept, hashed = "é👍\x00'\":1=/", "a|video/frames=b"
    settings = mx.HashSettings("md5")
    store = {
        "memory": lambda: mx.MemoryStore(override_graph(), hash_settings=settings),
        "duckdb": lambda: mx.DuckDBStore(
            tmp_path / "m.duckdb", override_graph(), hash_settings=settings
        ),
        "delta": lambda: mx.DeltaStore(
            tmp_path / "delta", override_graph(), hash_settings=settings
        ),
    }[kind]()
    with store:
        rows = store.resolve_update("video", samples=inputs(1)).new
        store.write(
            "video",
            rows.with_columns(
                pl.lit(kept).alias(C.data_version_column("audio")),
                pl.lit(hashed).alias(C.data_version_column("frames")),
            ),
        )
        crop = store.resolve_update("crop").new.row(0, named=True)
        video = store.read("video").row(0, named=True)
        # Written back, stored data versions stay as they are (a migration keeps them).
        stored = store.read("video")
        versions = [c for c in stored.columns if c.startswith((C.PROVENANCE, C.DATA_VERSION))]
        store.write("video", stored.select("sample_id", *versions).drop(C.DATA_VERSION))
        again = store.read("video").row(0, named=True)
    assert video[C.data_version_column("audio")] == kept
    assert video[C.data_version_column("frames")] == md5("override:" + hashed)
    assert crop[C.provenance_column("audio")] == md5(
        field_input("crop", "audio", ("video", "audio", kept))
    )
    assert crop[C.provenance_column("frames")] == md5(
        field_input("crop", "frames", ("video", "frames", md5("override:" + hashed)))
    )
    assert video[C.DATA_VERSION] == md5(
        by_field("audio", kept, "frames", md5("override:" + hashed))
    )
    assert {k: again[k] for k in video if k.startswith(C.DATA_VERSION)} == {
        k: video[k] for k in video if k.startswith(C.DATA_VERSION)
    }
