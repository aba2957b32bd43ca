"""DeltaStore locations with spaces, '#', '%', non-ASCII, file URIs and relative paths.

deltalake hands data file names back percent-encoded and polars read them literally: the
first write to `/data/my store` succeeded and every read after it failed. Each location
below runs a whole life (writes, reads, increments, history, soft and hard delete, reopen,
compaction) and must give what the memory store gives. Paths deltalake itself cannot use
are refused at open with the character named; object-store URIs are made canonical the same
way (checked without a server: the URI text and the decoding of file names).
"""

import os
from pathlib import Path

import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core import columns as C
from metaxy_core.stores._delta_location import DeltaTableAt, _decoded, canonical_location
from tests.core.video import graph, inputs
from tests.stores.contract import materialize_video, write_root

VOLATILE = [C.CREATED_AT, C.UPDATED_AT, C.WRITE_ID]
FEATURES = ["video", "crop", "face_detection", "transcript"]


def live(store: mx.MetadataStore) -> dict[str, tuple[pl.Schema, list[tuple]]]:
    """Every feature's latest rows (deleted included) and history, minus volatile columns."""
    frames = {
        f"{key} {what}": frame.drop(VOLATILE).with_columns(pl.col(C.DELETED_AT).is_not_null())
        for key in FEATURES
        for what, frame in [
            ("read", store.read(key, include_deleted=True)),
            ("history", store.history(key)),
        ]
    }
    return {k: (frame.schema, frame.sort(frame.columns).rows()) for k, frame in frames.items()}


def a_life(store: mx.MetadataStore) -> None:
    """Writes, a stale rewrite, a soft and a hard delete."""
    materialize_video(store, inputs(6))
    write_root(store, "video", inputs(6, audio_suffix="-v2", changed=2), path="v2.mp4")
    assert store.resolve_update("crop").counts() == {"new": 0, "stale": 2, "orphaned": 0}
    materialize_video(store, inputs(6, audio_suffix="-v2", changed=2))
    assert store.delete("crop", pl.DataFrame({"sample_id": ["s0005"]})) == 1
    assert store.delete("video", pl.DataFrame({"sample_id": ["s0004", "nope"]}), hard=True) == 1


def location_of(form: str, directory: Path, tmp_path: Path, monkeypatch) -> str | Path:
    match form:
        case "path":
            return directory
        case "str":
            return str(directory)
        case "file_uri":  # percent-encoded by pathlib
            return directory.as_uri()
        case "relative":
            monkeypatch.chdir(tmp_path)
            return os.path.relpath(directory, tmp_path)
    raise AssertionError(form)


@pytest.mark.parametrize(
    ("name", "form"),
    [
        ("with space", "path"),
        ("naïve-é", "file_uri"),
        ("hash#tag", "str"),
        ("100%", "relative"),
        ("50%zz", "file_uri"),
        ("日本 #?%&;,'", "relative"),
    ],
)
def test_a_store_lives_at_an_odd_local_location(tmp_path, monkeypatch, name, form):
    directory = tmp_path / name / "store"
    location = location_of(form, directory, tmp_path, monkeypatch)
    reference = mx.MemoryStore(graph())
    a_life(reference)

    with mx.DeltaStore(location, graph()) as store:
        assert store.uri == str(directory)  # one canonical form for every deltalake call
        a_life(store)
        assert live(store) == live(reference)
    with mx.DeltaStore(location, graph()) as store:  # reopened
        assert live(store) == live(reference)
        assert store.compact()["video"] > 0
        assert live(store) == live(reference)
        later = inputs(6, audio_suffix="-v3", changed=1)
        assert write_root(store, "video", later, path="v3.mp4").counts()["stale"] == 2
        assert store.resolve_update("video", samples=later).counts()["stale"] == 0
    assert (directory / "video" / "_delta_log").is_dir()  # the directory named, not an escape
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["store"]


@pytest.mark.parametrize(
    ("name", "named"),
    [("p%20q", "'%20'"), ("x%4a", "'%4a'"), ("b[1]", "'['"), ("a|b", "'|'"), ("tab\there", "\\t")],
)
def test_a_local_path_deltalake_cannot_use_is_refused_at_open(tmp_path, name, named):
    with pytest.raises(mx.StoreError, match="deltalake mishandles") as error:
        mx.DeltaStore(tmp_path / name, graph())
    assert named in str(error.value)
    assert not (tmp_path / name).exists()


def test_data_file_names_reach_polars_decoded(tmp_path):
    with mx.DeltaStore(tmp_path / "a b#c%", graph()) as store:
        write_root(store, "video", inputs(2), path="v.mp4")
        (uri,) = DeltaTableAt(f"{store.uri}/video").file_uris()
    assert uri.startswith(f"{tmp_path}/a b#c%/video/part-")
    assert Path(uri).is_file()


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("s3://bucket/with space/metaxy/", "s3://bucket/with%20space/metaxy"),
        ("s3://bucket/with%20space/metaxy", "s3://bucket/with%20space/metaxy"),
        ("s3://bucket/a#b?c", "s3://bucket/a%23b%3Fc"),
        ("gs://bucket/100%/x", "gs://bucket/100%25/x"),
        ("az://container/日本", "az://container/%E6%97%A5%E6%9C%AC"),
        (
            "abfss://c@account.dfs.core.windows.net/p q",
            "abfss://c@account.dfs.core.windows.net/p%20q",
        ),
        ("file:///tmp/x%20y/", "/tmp/x y"),
        ("file://localhost/tmp/a%23b", "/tmp/a#b"),
        ("file:/tmp/plain", "/tmp/plain"),
    ],
)
def test_locations_are_made_canonical(given, canonical):
    assert canonical_location(given) == canonical


def test_a_file_uri_of_another_host_is_refused():
    with pytest.raises(mx.StoreError, match="must name this machine"):
        canonical_location("file://elsewhere/data")


@pytest.mark.parametrize(
    ("listed", "read"),
    [
        ("/tmp/x%20y/t/part-0.parquet", "/tmp/x y/t/part-0.parquet"),
        ("s3://bucket/with%20space/t/part-0.parquet", "s3://bucket/with space/t/part-0.parquet"),
        ("s3://bucket/plain/t/part-0.parquet", "s3://bucket/plain/t/part-0.parquet"),
    ],
)
def test_listed_file_names_are_decoded_once(listed, read):
    assert _decoded(listed) == read
