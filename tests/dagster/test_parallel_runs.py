"""Batch runs in parallel on the Delta store: nothing lost, nothing duplicated, aggregations once.

Four batches run at once, each in a process of its own with Dagster's multiprocess executor
(its two leaves run in parallel step processes), all writing one Delta store. A feature
keyed by other columns than the batch (the N:1 `group_loudness`) is left out of the batch
runs and runs once afterwards, in a batch of its own groups, instead of redoing its whole
increment in every batch.
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import dagster as dg
import pytest

import metaxy_core as mx
import metaxy_dagster as mxd
from metaxy_dagster import _changes
from tests.dagster import parallel
from tests.dagster.sensing import execute, requests, tick

SENSOR = "metaxy_increment_sensor"
LEAVES = ["clip", "loudness", "words"]
RUNS_AT_ONCE = 4


def selection(request: dg.RunRequest) -> list[str]:
    return [k.to_user_string() for k in request.asset_selection or []]


def run_all(requests: list[dg.RunRequest], instance: dg.DagsterInstance, delta: str) -> list[bool]:
    """Execute the runs four at a time, each in a process of its own.

    The processes fork from a fork server that imported the code location once.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(parallel.PRELOAD)
    calls = [
        (
            instance.get_ref(),
            delta,
            r.partition_key,
            [k.path for k in r.asset_selection or []],
            dict(r.tags),
        )
        for r in requests
    ]
    # Not multiprocessing.Pool: its daemonic workers may not start step processes.
    with ProcessPoolExecutor(RUNS_AT_ONCE, mp_context=context) as pool:
        return list(pool.map(parallel.execute_run, *zip(*calls, strict=True)))


@pytest.mark.slow
def test_four_batch_runs_at_once_on_delta(instance, tmp_path, monkeypatch):
    delta = str(tmp_path / "delta")
    monkeypatch.setenv(parallel.DELTA_ENV, delta)
    defs = parallel.delta_definitions()
    batches = requests(tick(defs, SENSOR, instance))
    assert len(batches) == RUNS_AT_ONCE and all(selection(r) == LEAVES for r in batches)
    assert run_all(batches, instance, delta) == [True] * RUNS_AT_ONCE

    (aggregation,) = requests(tick(defs, SENSOR, instance))  # once, after the batches
    assert selection(aggregation) == ["group_loudness"]
    assert run_all([aggregation], instance, delta) == [True]
    assert isinstance(tick(defs, SENSOR, instance), dg.SkipReason)

    store = mxd.MetaxyStore(graph=parallel.graph(), delta_uri=str(tmp_path / "delta")).open()
    for feature in LEAVES:  # every sample exactly once per feature, in the log too
        history = store.history(feature)
        assert history.height == parallel.SAMPLES and history["sample_id"].n_unique() == 40
    summary = store.history("group_loudness")
    assert summary.height == parallel.GROUPS
    assert summary["members"].sum() == parallel.SAMPLES


@pytest.mark.parametrize("solo", [True, False], ids=["solo", "solo-off"])
def test_batch_runs_leave_the_aggregation_to_one_run_of_its_own(instance, monkeypatch, solo):
    monkeypatch.setattr(_changes, "SOLO_OTHER_KEYS", solo)
    g = parallel.graph()
    store = mxd.MetaxyStore(graph=g, store=mx.MemoryStore(g))
    defs = parallel.definitions(store, batch_size=20, executor=dg.in_process_executor)
    for _ in range(3):
        result = tick(defs, SENSOR, instance)
        for request in requests(result):
            assert execute(defs, request, instance).success
    assert isinstance(tick(defs, SENSOR, instance), dg.SkipReason)
    writes = store.open().history("group_loudness")
    if solo:
        assert writes.height == parallel.GROUPS
    else:  # each batch run recomputed every group of its increment
        assert writes.height > parallel.GROUPS
    assert writes.sort("grp").unique("grp", keep="last")["members"].sum() == parallel.SAMPLES
