"""Several processes making the first write to a Delta table at once keep every column.

delta-rs retries a commit that lost its version at the next one; for the commit that
creates a table it did so blindly, and the late creator's schema replaced the first one's
(about one race in four lost a writer's column). Each round gives N writer processes a
fresh store, and their first writes, each with a column of its own, start their commits at
the same moment (`line_up`). The same holds for the store's own tables: racing creations
of the settings table record one row. With the protection switched off
(`CREATE_COMMIT_RETRIES = None`, delta-rs's default) the loss must show within the rounds;
with it, no round may lose a column, a row, a batch manifest or record a second setting.
"""

import multiprocessing
from pathlib import Path

import polars as pl
import pytest

import metaxy_core as mx
from tests.stores.lined_up import line_up

WRITERS = 3
ROUNDS = {"protected": 8, "unprotected": 8}


def free_graph() -> mx.FeatureGraph:
    """A root without a feature class (any user columns) and a seed feature."""
    return mx.FeatureGraph(
        [
            mx.FeatureSpec("doc", id_columns=["doc_id"], fields=["text"]),
            mx.FeatureSpec("seed", id_columns=["seed_id"], fields=["text"]),
        ]
    )


def write_doc(store: mx.MetadataStore, ids: list[str], **columns: str) -> None:
    samples = pl.DataFrame({"doc_id": ids, "text": ids})
    rows = store.resolve_update("doc", samples=samples).new
    store.write("doc", rows.with_columns(pl.lit(v).alias(c) for c, v in columns.items()))


def prepare_round(uri: str) -> None:
    """A store whose settings and graph snapshot are recorded: only `doc` is left to create."""
    with mx.DeltaStore(uri, free_graph()) as store:
        samples = pl.DataFrame({"seed_id": ["s"], "text": ["s"]})
        store.write("seed", store.resolve_update("seed", samples=samples).new)


def first_writer(root: str, worker: int, rounds: int, barrier, protected: bool) -> None:
    """One process: in each round, create the round's `doc` table at once with the others."""
    from metaxy_core.stores import _delta_commits

    if not protected:
        assert hasattr(_delta_commits, "CREATE_COMMIT_RETRIES")
        _delta_commits.CREATE_COMMIT_RETRIES = None
    arm = line_up(barrier, "doc")
    for round_ in range(rounds):
        with mx.DeltaStore(f"{root}/r{round_:03d}", free_graph()) as store:
            arm()
            write_doc(store, [f"w{worker}-{i}" for i in range(3)], **{f"c{worker}": f"v{worker}"})


def lost_in_round(uri: str) -> list[str]:
    """What a round lost: writers' columns, or rows without their writer's value."""
    with mx.DeltaStore(uri, free_graph()) as store:
        doc = store.read("doc")
    lost = [f"c{w}" for w in range(WRITERS) if f"c{w}" not in doc.columns]
    if doc.height != 3 * WRITERS:
        lost.append(f"{3 * WRITERS - doc.height} rows")
    for w in range(WRITERS):
        column = f"c{w}"
        if column in doc.columns:
            mine = doc.filter(pl.col("doc_id").str.starts_with(f"w{w}-"))[column]
            if mine.to_list() != [f"v{w}"] * 3:
                lost.append(f"values of {column}")
    return lost


def race(root: Path, *, protected: bool) -> dict[int, list[str]]:
    rounds = ROUNDS["protected" if protected else "unprotected"]
    for round_ in range(rounds):
        prepare_round(f"{root}/r{round_:03d}")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WRITERS)
    writers = [
        context.Process(target=first_writer, args=(str(root), w, rounds, barrier, protected))
        for w in range(WRITERS)
    ]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=300)
    assert [p.exitcode for p in writers] == [0] * WRITERS
    losses = {r: lost_in_round(f"{root}/r{r:03d}") for r in range(rounds)}
    return {r: lost for r, lost in losses.items() if lost}


@pytest.mark.slow
@pytest.mark.parametrize("protected", [True, False], ids=["protected", "unprotected"])
def test_first_writes_racing_keep_every_column(tmp_path, protected):
    losses = race(tmp_path, protected=protected)
    if protected:
        assert losses == {}, f"rounds that lost data: {losses}"
    else:
        assert losses, "the race never lost a column without the protection: the test is blind"


def fresh_store_writer(root: str, worker: int, rounds: int, barrier, protected: bool) -> None:
    """One process: in each round, the first writes to a fresh store (settings, rows, batch)."""
    from metaxy_core.stores import _delta_commits

    if not protected:
        assert hasattr(_delta_commits, "CREATE_COMMIT_RETRIES")
        _delta_commits.CREATE_COMMIT_RETRIES = None
    arm = line_up(barrier, "metaxy_system__settings")
    for round_ in range(rounds):
        with mx.DeltaStore(f"{root}/r{round_:03d}", free_graph()) as store:
            ids = [f"w{worker}-{i}" for i in range(3)]
            arm()
            write_doc(store, ids, **{f"c{worker}": f"v{worker}"})
            store.write_batch(f"b{worker}", "doc", pl.DataFrame({"doc_id": ids}), kind="batch")


def settings_rows_and_losses(uri: str) -> tuple[int, list[str]]:
    with mx.DeltaStore(uri, free_graph()) as store:
        batches = store.batches()["batch_key"].to_list()
        snapshots = store.graph_snapshots().height
    lost = lost_in_round(uri)
    if batches != [f"b{w}" for w in range(WRITERS)]:
        lost.append(f"batches {batches}")
    if snapshots < 1:
        lost.append("the graph snapshot")
    return pl.read_delta(f"{uri}/metaxy_system__settings").height, lost


@pytest.mark.slow
@pytest.mark.parametrize("protected", [True, False], ids=["protected", "unprotected"])
def test_first_writes_to_a_fresh_store_record_one_setting_and_every_manifest(tmp_path, protected):
    rounds = 6
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WRITERS)
    writers = [
        context.Process(
            target=fresh_store_writer, args=(str(tmp_path), w, rounds, barrier, protected)
        )
        for w in range(WRITERS)
    ]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=300)
    assert [p.exitcode for p in writers] == [0] * WRITERS

    outcomes = [settings_rows_and_losses(f"{tmp_path}/r{r:03d}") for r in range(rounds)]
    if protected:  # the settings table's creation raced: the first creation won alone
        assert outcomes == [(1, [])] * rounds
    else:
        assert any(rows > 1 for rows, _ in outcomes), "no race recorded two settings rows"
