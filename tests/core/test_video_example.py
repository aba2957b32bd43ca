"""The issue's acceptance scenario on the in-memory store."""

import metaxy_core as mx
from metaxy_core.testing import compute_increment
from tests.core.video import VALUES, bump, graph, inputs

ORDER = ["video", "crop", "face_detection", "transcript"]


def materialize_all(store: mx.MetadataStore, samples) -> dict[str, mx.Increment]:
    out = {}
    for key in ORDER:
        out[key] = compute_increment(
            store, key, VALUES[key], samples=samples if key == "video" else None
        )
    return out


def test_first_run_everything_new_then_nothing():
    store = mx.MemoryStore(graph())
    first = materialize_all(store, inputs())
    assert {k: inc.counts()["new"] for k, inc in first.items()} == dict.fromkeys(ORDER, 100)
    second = materialize_all(store, inputs())
    assert all(inc.is_empty for inc in second.values())


def test_audio_code_bump_stales_only_audio_readers():
    store = mx.MemoryStore(graph())
    materialize_all(store, inputs())
    store.graph = bump(store.graph, "video", "audio", "2")
    seen = {}
    for key in ORDER:
        # face_detection must see nothing at every step, before and after upstream rewrites
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


def test_changed_audio_input_of_seven_samples():
    store = mx.MemoryStore(graph())
    materialize_all(store, inputs())
    changed = materialize_all(store, inputs(audio_suffix="-v2", changed=7))
    for key in ("video", "crop", "transcript"):
        assert changed[key].counts() == {"new": 0, "stale": 7, "orphaned": 0}
        assert sorted(changed[key].stale["sample_id"]) == [f"s{i:04d}" for i in range(7)]
    assert changed["face_detection"].is_empty
