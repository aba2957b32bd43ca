"""The filter language: what parses, what is refused (and how), and where it is checked."""

import datetime as dt

import narwhals as nw
import polars as pl
import pytest

import metaxy_core as mx
from metaxy_core._filters import ALLOWED, parse_filter, parse_filters
from metaxy_core.testing import compute_increment
from tests.core.video import Video, graph, inputs
from tests.stores.contract import materialize_video

# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "columns"),
    [
        ("duration > 5", ("duration",)),
        ("a = 1 AND b <> 'x' OR NOT c", ("a", "b", "c")),
        ("a != 1 and b <= 2.5e3", ("a", "b")),
        ("lang IN ('en', 'fr', NULL)", ("lang",)),
        ("n NOT IN (1, -2)", ("n",)),
        ("n BETWEEN 1 AND 10", ("n",)),
        ("n NOT BETWEEN -1.5 AND 1.5", ("n",)),
        ("path LIKE '%.mp4'", ("path",)),
        ("path NOT ILIKE 'A!_%' ESCAPE '!'", ("path",)),
        ("x IS NULL OR y IS NOT NULL", ("x", "y")),
        ("flag IS TRUE OR flag IS NOT FALSE", ("flag",)),
        ("(a + b) * 2 - c / 3 > a // 2 + b % 3", ("a", "b", "c")),
        ("-a > 0", ("a",)),
        ("lower(name) = upper(name) OR length(name) > abs(n)", ("name", "n")),
        ("coalesce(a, b, 0) = round(c, 2) AND round(c) > 1", ("a", "b", "c")),
        ("day >= DATE '2024-01-31'", ("day",)),
        ("at < TIMESTAMP '2024-01-31 12:00:00+02:00'", ("at",)),
        ("at < TIMESTAMPTZ '2024-01-31 12:00:00Z'", ("at",)),
        ("local < TIMESTAMP '2024-01-31'", ("local",)),
        ('"odd ""name""" = 1', ('odd "name"',)),
        ("x = 1 -- a trailing comment", ("x",)),
        ("x = 1;", ("x",)),
        ("TRUE", ()),
        ("NULL", ()),
    ],
)
def test_allowed_filters_parse(text, columns):
    flt = parse_filter(text)
    assert (flt.text, flt.columns) == (text, columns)


SECRET = "path IN (SELECT content FROM read_text('secret.txt'))"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (SECRET, r"the subquery .* never read a file or another table"),
        ("sample_id IN (SELECT sample_id FROM crop)", r"the subquery .*FROM crop"),
        ("n = (SELECT max(n) FROM video)", r"the subquery"),
        ("EXISTS (SELECT 1 FROM glob('*'))", r"the subquery"),
        ("read_text('secret.txt') IS NOT NULL", r"the function read_text\(\) \(a filter can"),
        ("read_csv('x.csv') IS NULL", r"the function read_csv\(\) \(a filter can"),
        ("glob('*') IS NULL", r"the function glob\(\) \(a filter can"),
        ("query('SELECT 1') IS NULL", r"the function query\(\) \(a filter can"),
        ("getvariable('v') = 1", r"the function getvariable\(\)"),
        ("md5(path) = 'x'", r"the function md5\(\) is not allowed"),
        ("now() > at", r"the function now\(\) is not allowed"),
        ("count(*) > 1", r"the function count\(\)"),
        ("*", r"'\*' is not allowed"),
        ("t.path = 'a'", r"the qualified name 't.path' .*'path'"),
        ("video.path = 'a'", r"the qualified name"),
        ("a = 1; DROP TABLE video", r"holds 2 statements; a filter is one condition"),
        ("a = 1; SELECT * FROM read_text('secret.txt')", r"holds 2 statements"),
        ("DROP TABLE video", r"'DROP TABLE video' is not allowed"),
        ("CAST(n AS VARCHAR) = '1'", r"the cast .* \(only DATE '...' and TIMESTAMP '...'"),
        ("n::INT = 1", r"the cast"),
        ("x = $1", r"the parameter"),
        ("x = ?", r"the parameter"),
        ("x SIMILAR TO 'a'", r"is not allowed"),
        ("x GLOB 'a*'", r"is not allowed"),
        ("x ~ 'a'", r"is not allowed"),
        ("x COLLATE nocase = 'a'", r"is not allowed"),
        ("CASE WHEN x THEN 1 END = 1", r"is not allowed"),
        ("x BETWEEN SYMMETRIC 1 AND 2", r"is not allowed"),
        ("x IS DISTINCT FROM y", r"is not allowed"),
        ("x LIKE ANY ('a%', 'b%')", r"is not allowed"),
        ("x IN (y)", r"IN takes a list of literal values; 'y' is not one"),
        ("x IN ()", r"IN needs at least one value"),
        ("x LIKE y", r"the LIKE pattern must be a 'text' literal"),
        ("x LIKE 'a' ESCAPE '%'", r"ESCAPE takes one character other than"),
        ("x LIKE 'a' ESCAPE 'ab'", r"ESCAPE takes one character"),
        ("x LIKE 'a!' ESCAPE '!'", r"ends with its escape character"),
        ("round(x, -1) = 0", r"round\(\) takes an integer literal from 0 to 15"),
        ("round(x, y) = 0", r"round\(\) takes an integer literal"),
        ("x = 99999999999999999999", r"does not fit in 64 bits"),
        ("d = DATE 'nope'", r"'nope' is not a valid date"),
        ("at = TIMESTAMPTZ '2024-01-01 10:00:00'", r"needs an offset"),
        ("x >>>> (", r"does not parse"),
        ("x = 'unterminated", r"does not parse"),
        ("", r"non-empty string"),
        ("  ", r"non-empty string"),
        (";", r"non-empty string"),
    ],
)
def test_refused_filters_name_the_part(text, match):
    with pytest.raises(mx.SpecError, match=match) as info:
        parse_filter(text)
    assert repr(text) in str(info.value)


def test_refusals_list_what_is_allowed():
    with pytest.raises(mx.SpecError) as info:
        parse_filter("md5(path) = 'x'")
    assert f"Filters may use {ALLOWED}." in str(info.value)
    assert "lower, round, upper" in str(info.value)


def test_long_or_chains_stay_flat_and_deep_nesting_is_refused():
    chain = parse_filter(" OR ".join(f"n = {i}" for i in range(3000)))
    frame = pl.DataFrame({"n": [1, 2999, 3000, None]})
    assert frame.filter(chain.to_polars(frame.schema))["n"].to_list() == [1, 2999]
    depth, deepest = 0, 0
    for char in chain.to_sql(frame.schema):
        depth += {"(": 1, ")": -1}.get(char, 0)
        deepest = max(deepest, depth)
    assert deepest == 3  # (... OR (n = CAST(1 AS BIGINT)) OR ...), not 3000 levels
    with pytest.raises(mx.SpecError, match=r"nests too deeply; write long lists .* as IN"):
        parse_filter("(" * 3000 + "n" + ")" * 3000 + " > 1")


def test_filters_are_parsed_once():
    assert parse_filter("n > 1") is parse_filter("n > 1")
    assert parse_filters("n > 1") == (parse_filter("n > 1"),)
    assert parse_filters(["n > 1", "n < 3"])[1].columns == ("n",)
    with pytest.raises(mx.SpecError, match="non-empty string"):
        parse_filters([["n > 1"]])  # type: ignore[list-item]


# -- checking against columns, and the generated SQL -----------------------------------------

SCHEMA = {
    "name": pl.String(),
    "n": pl.Int32(),
    "score": pl.Float32(),
    "flag": pl.Boolean(),
    "day": pl.Date(),
    "at": pl.Datetime("ns", "Europe/Paris"),
    "local": pl.Datetime("ms"),
    "tags": pl.List(pl.String()),
    "metaxy_provenance": pl.String(),
}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("nmae = 'a'", r"unknown column\(s\) \['nmae'\]; available: \['at', 'day', 'flag', "),
        ("nmae = 'a'", r"and 1 metaxy_\* system columns\. Hint: did you mean 'name'\?"),
        ("name = 1", r"cannot compare text with integer"),
        ("day = '2024-01-01'", r"cannot compare date with text; write dates as DATE '2024-01-31'"),
        ("at > TIMESTAMP '2024-01-01 00:00:00'", r"datetime with time zone with datetime;.*offset"),
        ("local > TIMESTAMP '2024-01-01 00:00:00Z'", r"cannot compare datetime with datetime with"),
        ("day < TIMESTAMP '2024-01-01 00:00:00'", r"compare dates with DATE"),
        ("flag = 1", r"cannot compare boolean with integer"),
        ("score // 2 = 1", r"// needs integers"),
        ("n + name > 1", r"\+ needs numbers, but 'name' is text"),
        ("lower(n) = 'a'", r"lower\(\) needs text, but 'n' is integer"),
        ("name LIKE 'a%' AND n", r"'n' is integer, not a condition"),
        ("n", r"it is integer, not a condition"),
        ("n IN (1, 'a')", r"cannot compare integer with text"),
        ("coalesce(name, 1) = 'a'", r"cannot coalesce text with integer"),
        ("tags IS NULL", r"column 'tags' has type List\(String\); filters read text, integer"),
    ],
)
def test_check_refuses_unknown_columns_and_mixed_kinds(text, match):
    with pytest.raises(mx.SpecError, match=match) as info:
        parse_filter(text).check(SCHEMA, where="read of item")
    assert str(info.value).startswith(f"Filter {text!r} on read of item")


def test_check_accepts_narwhals_schemas_and_every_width():
    schema = nw.from_native(pl.DataFrame(schema=SCHEMA)).schema
    for text in ["n + 1 > score", "at = TIMESTAMP '2024-01-01 00:00:00+00:00'", "local IS NULL"]:
        parse_filter(text).check(schema, where="x")
        parse_filter(text).check(SCHEMA, where="x")


def test_generated_sql_quotes_every_identifier_and_literal():
    schema = {'odd "name"': pl.String(), "n": pl.Int64()}
    sql = parse_filter('"odd ""name""" = \'x\'\') OR (1=1\' AND n > 2').to_sql(schema)
    assert sql == '(("odd ""name""" = \'x\'\') OR (1=1\') AND ("n" > CAST(2 AS BIGINT)))'


def test_comparisons_on_zoned_and_narrow_columns_run_in_polars():
    frame = pl.DataFrame(
        {
            "at": [dt.datetime(2024, 1, 1, 12, 30, tzinfo=dt.UTC), None],
            "n": pl.Series([1, None], dtype=pl.Int32),
            "score": pl.Series([0.25, None], dtype=pl.Float32),
        }
    ).with_columns(pl.col("at").dt.convert_time_zone("Europe/Paris"))
    text = "at = TIMESTAMP '2024-01-01 13:30:00+01:00' AND n IN (1, 2) AND n + 1 = 2"
    expr = parse_filter(text).to_polars(frame.schema)
    assert frame.filter(expr).height == 1
    assert frame.filter(~expr).height == 0  # NULL rows stay NULL under NOT


# -- every store refuses the same way, before any engine runs --------------------------------


@pytest.fixture(params=["memory", "duckdb", "delta"])
def video_store(request, tmp_path):
    if request.param == "memory":
        store = mx.MemoryStore(graph())
    elif request.param == "duckdb":
        store = mx.DuckDBStore(tmp_path / "m.duckdb", graph())
    else:
        store = mx.DeltaStore(tmp_path / "delta", graph())
    materialize_video(store, inputs(3))
    store.write("video", store.read("video").with_columns(pl.lit("TOP-SECRET").alias("path")))
    yield store
    store.close()


def leaking_filters(tmp_path) -> list[str]:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    return [
        f"path IN (SELECT content FROM read_text('{secret}'))",
        f"sample_id IN (SELECT sample_id FROM read_csv('{secret}'))",
        "sample_id IN (SELECT sample_id FROM crop)",  # another feature's table
    ]


def test_no_filter_reads_a_file_or_another_table_on_any_store(video_store, tmp_path):
    target = mx.MemoryStore(graph())
    for text in leaking_filters(tmp_path):
        refused = r"Filter .*: the subquery .* \(a filter can never read a file or another"
        with pytest.raises(mx.SpecError, match=refused):
            video_store.read("video", filters=[text])
        with pytest.raises(mx.SpecError, match=refused):
            video_store.copy_to(target, filters=[text])
        with pytest.raises(mx.SpecError, match=refused):
            video_store.resolve_update("crop", filters=[text])
        with pytest.raises(mx.SpecError, match=rf"Dep on video: {refused}"):
            mx.FeatureDep(Video, filters=[text])
    assert not target.has_feature("video")


def test_raw_sql_would_read_the_file(tmp_path):
    """The protection switched off: the same text handed to DuckDB reads the secret."""
    store = mx.DuckDBStore(tmp_path / "m.duckdb", graph())
    materialize_video(store, inputs(3))
    store.write("video", store.read("video").with_columns(pl.lit("TOP-SECRET").alias("path")))
    relation = store.latest("video").to_native()
    for text in leaking_filters(tmp_path)[::2]:
        assert len(relation.filter(text).fetchall()) == 3
    store.close()


def test_unknown_columns_are_the_same_spec_error_on_every_store(video_store):
    with pytest.raises(mx.SpecError) as info:
        video_store.read("video", filters=["paht = 'x'"])
    assert str(info.value).startswith(
        "Filter \"paht = 'x'\" on read of video names unknown column(s) ['paht']; "
        "available: ['path', 'sample_id'] and "
    )
    assert str(info.value).endswith("Hint: did you mean 'path'?")
    with pytest.raises(mx.SpecError, match=r"on copy_to of crop names unknown column\(s\)"):
        video_store.copy_to(mx.MemoryStore(graph()), features=["crop"], filters=["path = 'x'"])
    with pytest.raises(mx.SpecError, match=r"on resolve_update of crop .*\['nope'\]"):
        video_store.resolve_update("crop", filters=["nope = 1"])


def test_filters_on_system_and_typed_columns_work_on_every_store(video_store):
    assert video_store.read("video", filters="path = 'TOP-SECRET'").height == 3
    recent = "metaxy_created_at > TIMESTAMP '2000-01-01 00:00:00+00:00'"
    assert video_store.read("video", filters=[recent, "sample_id <> 's0001'"]).height == 2


# -- dep filters at graph build time -----------------------------------------------------------


def crop_with(**options) -> type[mx.Feature]:
    class FilteredCrop(
        mx.Feature,
        spec=mx.FeatureSpec(
            "filtered_crop",
            id_columns=["sample_id"],
            fields=["audio", "frames"],
            deps=[mx.FeatureDep(Video, **options)],
        ),
    ):
        crop_path: str

    return FilteredCrop


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"filters": ["duration > 1"]}, r"unknown column\(s\) \['duration'\]; available: \["),
        (
            {"rename": {"path": "video_path"}, "filters": ["path = 'a'"]},
            r"\['path'\].*renames \{'path': 'video_path'\}; filters use the new",
        ),
        ({"filters": ["path = 1"]}, r"cannot compare text with integer"),
        ({"filters": ["metaxy_created_at > DATE '2024-01-01'"]}, r"compare dates with DATE"),
    ],
)
def test_graph_refuses_dep_filters_the_upstream_cannot_answer(options, match):
    with pytest.raises(mx.GraphError, match=match) as info:
        mx.FeatureGraph([Video, crop_with(**options)])
    assert str(info.value).startswith("Feature filtered_crop, dep on video: Filter ")


def test_dep_filters_see_renamed_unselected_and_system_columns():
    feature = crop_with(
        rename={"path": "video_path"},
        select=[],
        filters=["video_path LIKE '%.mp4'", "metaxy_provenance__audio IS NOT NULL"],
    )
    graph_ = mx.FeatureGraph([Video, feature])
    again = mx.FeatureGraph.from_snapshot(graph_.to_json())  # filters survive a snapshot
    assert (
        again.spec("filtered_crop").deps[0].filters == graph_.spec("filtered_crop").deps[0].filters
    )
    store = mx.MemoryStore(graph_)
    compute_increment(store, "video", {"path": "v.mp4"}, samples=inputs(2))
    assert store.resolve_update("filtered_crop").new.height == 2


def test_dep_filters_on_an_optional_upstream_never_written():
    class Note(mx.Feature, spec=mx.FeatureSpec("note", id_columns=["sample_id"], fields=["x"])):
        note: str

    class Noted(
        mx.Feature,
        spec=mx.FeatureSpec(
            "noted",
            id_columns=["sample_id"],
            fields=["audio"],
            deps=[
                mx.FeatureDep(Video),
                mx.FeatureDep(Note, optional=True, filters=["metaxy_updated_at IS NOT NULL"]),
            ],
        ),
    ):
        pass

    store = mx.MemoryStore(mx.FeatureGraph([Video, Note, Noted]))
    compute_increment(store, "video", {"path": "v.mp4"}, samples=inputs(2))
    assert store.resolve_update("noted").new.height == 2
