"""SQLStore passes the store contract on a real PostgreSQL server (ClickHouse: see its module)."""

import multiprocessing
import os
import re

import narwhals as nw
import polars as pl
import pytest

import metaxy_core as mx
from tests.core.video import graph, inputs
from tests.stores.contract import StoreContract


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store_factory(self, postgres_url):
        def make(graph: mx.FeatureGraph, **kw) -> mx.SQLStore:
            return mx.SQLStore(postgres_url, graph, **kw)

        return make


# -- several processes write at once -----------------------------------------------------------

WRITERS = 2


def write_at_once(url: str, worker: int, barrier, serialise: bool, results) -> None:
    """One writer process: its write of `video` starts when every writer's does."""
    import contextlib
    import threading

    from metaxy_core.stores import _sql_tables

    _sql_tables.LOCK_WRITERS = serialise
    # Line up right before what the locks protect: the write (locked), or the append's
    # check that the table exists (unlocked), so the race happens whatever the scheduler does.
    tables = _sql_tables.PostgresTables
    method = "lock" if serialise else "lock_until_commit"
    real = getattr(tables, method)

    def lined_up(self, name: str):
        if name == "video":
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=30)
        return real(self, name)

    setattr(tables, method, lined_up)
    samples = inputs(4).with_columns(pl.col("sample_id") + f"-w{worker}")
    try:
        with mx.SQLStore(url, graph()) as store:
            rows = store.resolve_update("video", samples=samples).new
            store.write("video", rows.with_columns(path=pl.lit(f"w{worker}")))
    except mx.MetaxyError as exc:
        results.put((worker, str(exc)))
    else:
        results.put((worker, None))


def race(url: str, serialise: bool) -> dict[int, str]:
    """Run the writers at once on `url`; check what landed; return the failed writers."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(WRITERS), context.Queue()
    writers = [
        context.Process(target=write_at_once, args=(url, w, barrier, serialise, results))
        for w in range(WRITERS)
    ]
    for process in writers:
        process.start()
    outcome = dict(results.get(timeout=120) for _ in writers)
    for process in writers:
        process.join(timeout=60)
    failed = {w: error for w, error in outcome.items() if error is not None}
    with mx.SQLStore(url, graph()) as store:
        rows = store.history("video") if store.has_feature("video") else None
    landed = sorted(set(range(WRITERS)) - set(failed))
    paths = [] if rows is None else sorted(rows["path"].unique().to_list())
    assert paths == [f"w{w}" for w in landed]
    assert (0 if rows is None else rows.height) == 4 * len(landed)  # failures left nothing
    return failed


@pytest.mark.parametrize("serialise", [True, False], ids=["locked", "unlocked"])
def test_first_writes_from_several_processes_all_land(postgres_server, serialise):
    import psycopg

    def fresh_database(attempt: int) -> str:
        name = f"metaxy_race_{os.getpid()}_{serialise}_{attempt}"
        with psycopg.connect(postgres_server, autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return re.sub(r"/postgres(\?|$)", rf"/{name}\1", postgres_server, count=1)

    if serialise:
        assert race(fresh_database(0), serialise=True) == {}
        return
    # Without the lock, writers creating the table at once collide; a race may still miss,
    # so the protection-off run tries a few times and must see the collision at least once.
    collided = any(race(fresh_database(attempt), serialise=False) for attempt in range(4))
    assert collided, "no write collided without the lock in 4 races: the test is blind"


# -- ClickHouse without a server: the plan at least compiles to ClickHouse SQL -----------------


def test_the_clickhouse_plan_compiles_with_clickhouse_functions():
    """No ClickHouse server runs here (see test_sql_clickhouse.py): compile the provenance of
    an aggregation (ids of every id type, grouped members, xxh3_64) to ClickHouse SQL."""
    import ibis

    from metaxy_core.stores._sql_engine import CLICKHOUSE, IbisEngine
    from metaxy_core.versioning._provenance import expected_provenance
    from tests.stores.test_cross_store import event_graph

    engine = IbisEngine(CLICKHOUSE, upload=None, materialize=None, drop=None)
    event = ibis.table(
        {
            "user_id": "string",
            "at": "timestamp('UTC', 6)",
            "day": "date",
            "amount": "decimal(10, 2)",
            "flag": "boolean",
            "metaxy_data_version__e": "string",
        },
        name="event",
    )
    graph = event_graph()
    plan = expected_provenance(
        graph,
        mx.FeatureKey("user"),
        {mx.FeatureKey("event"): nw.from_native(event)},
        engine,
        mx.HashSettings("xxh3_64"),
    )
    sql = str(ibis.to_sql(plan.to_native(), dialect="clickhouse"))
    for function in ("xxh3(", "toUnixTimestamp64Micro(", "toDecimalString(", "groupArray("):
        assert function in sql, function
    with pytest.raises(mx.HashSettingsMismatchError, match="postgres has no built-in xxh3_64"):
        from metaxy_core.stores._sql_engine import POSTGRES

        IbisEngine(POSTGRES, upload=None, materialize=None, drop=None).hash(
            nw.from_native(event), {"h": "user_id"}, mx.HashSettings("xxh3_64")
        )
