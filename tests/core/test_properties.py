"""Hypothesis properties of the engine: order independence, incremental == full recompute,
a change to field X stales only X's dependents, aggregation independent of member order."""

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

import metaxy_core as mx
from metaxy_core import columns as C
from tests.core.video import graph as video_graph

FAST = settings(max_examples=15, deadline=None)
SAMPLE_IDS = [f"s{i}" for i in range(8)]


# -- shared pieces ---------------------------------------------------------------------------------


def roots_frame(inputs: dict[str, tuple[str, str]]) -> pl.DataFrame:
    ids = sorted(inputs)
    return pl.DataFrame(
        {
            "sample_id": ids,
            "audio": [inputs[i][0] for i in ids],
            "frames": [inputs[i][1] for i in ids],
        },
        schema={"sample_id": pl.String, "audio": pl.String, "frames": pl.String},
    )


def user_values(key: mx.FeatureKey, rows: pl.DataFrame) -> pl.DataFrame:
    """Deterministic user columns; crop overrides its audio data version with a lossy hash."""
    match key.path:
        case "video":
            return rows.with_columns(path=pl.col("audio"))
        case "crop":
            return rows.with_columns(
                crop_path=pl.lit("c"),
                **{
                    C.data_version_column("audio"): pl.lit("content:")
                    + pl.col("path").str.slice(0, 2)
                },
            )
        case "face_detection":
            return rows.with_columns(n_faces=pl.lit(1))
        case "transcript":
            return rows.with_columns(text=pl.lit("t"))
    return rows


def run_pipeline(store: mx.MetadataStore, samples: pl.DataFrame) -> None:
    """One pass over the graph: compute new and stale rows, delete orphans."""
    for key in store.graph.topological_order():
        spec = store.graph.spec(key)
        inc = store.resolve_update(key, samples=samples if spec.is_root else None)
        rows = inc.to_compute()
        if rows.height:
            store.write(key, user_values(key, rows))
        if inc.orphaned.height:
            store.delete(key, inc.orphaned)


def stored_state(store: mx.MetadataStore) -> dict[str, pl.DataFrame]:
    """Every feature's live rows without timestamps, write ids or the project version."""
    volatile = {
        C.CREATED_AT,
        C.UPDATED_AT,
        C.DELETED_AT,
        C.WRITE_ID,
        C.MATERIALIZATION_ID,
        C.PROJECT_VERSION,
    }
    state = {}
    for key in store.graph.keys:
        frame = store.read(key)
        state[key.path] = frame.select(sorted(c for c in frame.columns if c not in volatile))
    return state


# -- row order -------------------------------------------------------------------------------------


inputs_strategy = st.dictionaries(
    st.sampled_from(SAMPLE_IDS),
    st.tuples(st.sampled_from("abc"), st.sampled_from("xyz")),
    min_size=1,
)


@FAST
@given(inputs=inputs_strategy, seed_a=st.integers(0, 1000), seed_b=st.integers(0, 1000))
def test_row_order_never_changes_versions_or_increments(inputs, seed_a, seed_b):
    frame = roots_frame(inputs)
    stores = []
    for seed in (seed_a, seed_b):
        store = mx.MemoryStore(video_graph())
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
        inc = store.resolve_update("video", samples=shuffled)
        rows = user_values(mx.FeatureKey("video"), inc.new).sample(
            fraction=1.0, shuffle=True, seed=seed + 1
        )
        store.write("video", rows)
        stores.append(store)
    for key in ("crop", "transcript"):
        a, b = (s.resolve_update(key).new.sort("sample_id") for s in stores)
        assert a.equals(b), key
    for a, b in zip(
        stored_state(stores[0]).values(), stored_state(stores[1]).values(), strict=True
    ):
        assert a.equals(b)


# -- incremental == full recompute -----------------------------------------------------------------

FIELDS = [
    ("video", "audio"),
    ("video", "frames"),
    ("crop", "audio"),
    ("crop", "frames"),
    ("face_detection", "faces"),
    ("transcript", "text"),
]

change_strategy = st.one_of(
    st.tuples(
        st.just("input"),
        st.sampled_from(SAMPLE_IDS),
        st.tuples(st.sampled_from("abcd"), st.sampled_from("xyzw")),
    ),
    st.tuples(st.just("code"), st.sampled_from(FIELDS), st.integers(1, 3)),
    st.tuples(st.just("delete"), st.sampled_from(SAMPLE_IDS), st.none()),
)


def apply_change(change, inputs: dict, graph: mx.FeatureGraph) -> mx.FeatureGraph:
    kind, target, value = change
    if kind == "input":
        inputs[target] = value
    elif kind == "delete":
        inputs.pop(target, None)
    else:
        (feature, field), version = target, value
        old = graph.definition(feature)  # keep the class: its columns are validated on write
        bumped = old.spec.with_field_code_version(field, version)
        graph = graph.replace(mx.FeatureDefinition(bumped, old.columns, old.feature_class))
    return graph


@settings(max_examples=12, deadline=None)
@given(start=inputs_strategy, changes=st.lists(change_strategy, min_size=1, max_size=4))
def test_step_by_step_increments_equal_a_full_recompute(start, changes):
    inputs = dict(start)
    graph = video_graph()
    store = mx.MemoryStore(graph)
    run_pipeline(store, roots_frame(inputs))
    for change in changes:
        graph = apply_change(change, inputs, graph)
        store.graph = graph
        run_pipeline(store, roots_frame(inputs))
    fresh = mx.MemoryStore(graph)
    run_pipeline(fresh, roots_frame(inputs))
    incremental, full = stored_state(store), stored_state(fresh)
    for key in full:
        if full[key].is_empty():  # never written in the fresh store: no system columns to compare
            assert incremental[key].is_empty(), key
            continue
        assert incremental[key].sort("sample_id").equals(full[key].sort("sample_id")), key
    assert all(
        store.resolve_update(k, samples=roots_frame(inputs) if k == "video" else None).is_empty
        for k in ("video", "crop", "face_detection", "transcript")
    )


# -- a change to field X stales only X's dependents ------------------------------------------------


@st.composite
def random_graphs(draw) -> mx.FeatureGraph:
    """3-5 features over one id column; f0 is the root; fields use default or explicit deps."""
    n = draw(st.integers(3, 5))
    specs: list[mx.FeatureSpec] = []
    for i in range(n):
        names = draw(st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True))
        ups = (
            []
            if i == 0
            else draw(
                st.lists(
                    st.sampled_from(specs[:i]), min_size=1, max_size=2, unique_by=lambda s: s.key
                )
            )
        )
        fields = []
        for name in names:
            if ups and draw(st.booleans()):  # explicit deps: a subset of one upstream's fields
                up = draw(st.sampled_from(ups))
                chosen = draw(st.lists(st.sampled_from(up.field_keys), min_size=1, unique=True))
                fields.append(mx.FieldSpec(name, deps={up.key: chosen}))
            else:
                fields.append(mx.FieldSpec(name))
        specs.append(
            mx.FeatureSpec(
                f"f{i}", id_columns=["sample_id"], fields=fields, deps=[u.key for u in ups]
            )
        )
    return mx.FeatureGraph(specs)


def materialize(store: mx.MetadataStore, samples: pl.DataFrame) -> dict[str, mx.Increment]:
    seen = {}
    for key in store.graph.topological_order():
        inc = store.resolve_update(key, samples=samples if store.graph.spec(key).is_root else None)
        if inc.to_compute().height:
            store.write(key, inc.to_compute())
        seen[key.path] = inc
    return seen


@settings(max_examples=20, deadline=None)
@given(graph=random_graphs(), data=st.data())
def test_a_change_to_field_x_stales_only_its_dependents(graph, data):
    root = graph.spec("f0")
    samples = pl.DataFrame({"sample_id": SAMPLE_IDS[:5], **{f: ["v"] * 5 for f in root.field_keys}})
    store = mx.MemoryStore(graph)
    materialize(store, samples)
    by_code = data.draw(st.booleans())
    if by_code:
        feature = data.draw(st.sampled_from([k.path for k in graph.keys]))
        field = data.draw(st.sampled_from(graph.spec(feature).field_keys))
        store.graph = graph.replace(graph.spec(feature).with_field_code_version(field, "2"))
        touched = SAMPLE_IDS[:5]
    else:
        feature, field = "f0", data.draw(st.sampled_from(root.field_keys))
        touched = data.draw(st.lists(st.sampled_from(SAMPLE_IDS[:5]), min_size=1, unique=True))
        samples = samples.with_columns(
            pl.when(pl.col("sample_id").is_in(touched))
            .then(pl.lit("w"))
            .otherwise(pl.col(field))
            .alias(field)
        )
    affected = {(mx.FeatureKey(feature), field), *graph.field_downstream(feature, field)}
    for key in graph.topological_order():
        expected_fields = sorted(f for k, f in affected if k == key)
        if (
            not expected_fields
        ):  # unaffected features see nothing, even before upstreams are rewritten
            assert store.resolve_update(key, samples=samples if key == "f0" else None).is_empty, key
    seen = materialize(store, samples)
    for key in graph.topological_order():
        inc = seen[key.path]
        expected_fields = sorted(f for k, f in affected if k == key)
        assert inc.new.is_empty() and inc.orphaned.is_empty()
        if not expected_fields:
            assert inc.is_empty, key
            continue
        assert sorted(inc.stale["sample_id"]) == sorted(touched), key
        assert set(inc.stale_fields()) == set(expected_fields), key
        for f, reasons in inc.stale_fields().items():
            reason = "code" if by_code and (key.path, f) == (feature, field) else "upstream"
            assert reasons == {reason: len(touched)}, (key, f)


# -- aggregation is independent of member order ----------------------------------------------------


class Utterance(
    mx.Feature, spec=mx.FeatureSpec("utterance", id_columns=["utt_id"], fields=["audio"])
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
    n: int


members_strategy = st.dictionaries(
    st.sampled_from([f"u{i}" for i in range(10)]),
    st.tuples(st.sampled_from("xyz"), st.sampled_from("abc")),
    min_size=1,
)


@FAST
@given(members=members_strategy, seeds=st.lists(st.integers(0, 1000), min_size=2, max_size=3))
def test_aggregation_is_independent_of_member_order(members, seeds):
    frame = pl.DataFrame(
        {
            "utt_id": list(members),
            "speaker_id": [m[0] for m in members.values()],
            "audio": [m[1] for m in members.values()],
        }
    )
    results = []
    for seed in seeds:
        store = mx.MemoryStore(mx.FeatureGraph([Utterance, Speaker]))
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
        inc = store.resolve_update("utterance", samples=shuffled.select("utt_id", "audio"))
        rows = inc.new.join(shuffled.select("utt_id", "speaker_id"), on="utt_id").sample(
            fraction=1.0, shuffle=True, seed=seed
        )
        store.write("utterance", rows)
        speaker = store.resolve_update("speaker").new.sort("speaker_id")
        assert speaker["speaker_id"].to_list() == sorted(
            set(frame["speaker_id"])
        )  # one row per group
        results.append(speaker)
    assert all(r.equals(results[0]) for r in results)
