"""A small graph for batch runs in parallel: a root, two 1:1 leaves and an aggregation.

    clip{audio} ──► loudness{db} ══► group_loudness{mean}   (N:1 on `grp`)
         └────────► words{text}

`metaxy_job()` rebuilds the job from `METAXY_PARALLEL_DELTA` (the Delta store's directory),
so that Dagster's multiprocess executor can rebuild it in each step process.
"""

import functools
import os
from typing import Any

import dagster as dg
import polars as pl

import metaxy_core as mx
import metaxy_dagster as mxd

SAMPLES = 40
GROUPS = 4
DELTA_ENV = "METAXY_PARALLEL_DELTA"


class Clip(mx.Feature, spec=mx.FeatureSpec("clip", id_columns=["sample_id"], fields=["audio"])):
    grp: str


class Loudness(
    mx.Feature,
    spec=mx.FeatureSpec(
        "loudness",
        id_columns=["sample_id"],
        fields=["db"],
        deps=[mx.FeatureDep(Clip, select=["grp"])],
    ),
):
    grp: str
    db: float


class Words(
    mx.Feature,
    spec=mx.FeatureSpec("words", id_columns=["sample_id"], fields=["text"], deps=[Clip]),
):
    text: str


class GroupLoudness(
    mx.Feature,
    spec=mx.FeatureSpec(
        "group_loudness",
        id_columns=["grp"],
        fields=["mean"],
        deps=[mx.FeatureDep(Loudness, lineage=mx.Lineage.aggregation(on=["grp"]))],
    ),
):
    mean: float
    members: int


def graph() -> mx.FeatureGraph:
    return mx.FeatureGraph([Clip, Loudness, Words, GroupLoudness])


def source() -> pl.DataFrame:
    ids = [f"s{i:03d}" for i in range(SAMPLES)]
    return pl.DataFrame({"sample_id": ids, "audio": [f"a{i}" for i in range(SAMPLES)]})


def _clip(context, increment: mx.Increment) -> pl.DataFrame:
    rows = increment.to_compute()
    return rows.with_columns(grp=pl.format("g{}", pl.col("sample_id").str.tail(1).cast(int) % 4))


def _loudness(context, increment: mx.Increment) -> pl.DataFrame:
    return increment.to_compute().with_columns(db=pl.lit(-20.0))


def _words(context, increment: mx.Increment) -> pl.DataFrame:
    return increment.to_compute().with_columns(text=pl.lit("hello"))


def _group_loudness(context, increment: mx.Increment) -> pl.DataFrame:
    members = increment.upstream("loudness", columns=["grp", "db"])
    summary = members.group_by("grp").agg(mean=pl.col("db").mean(), members=pl.len())
    return increment.to_compute().join(summary, on="grp")


COMPUTES = {
    "clip": _clip,
    "loudness": _loudness,
    "words": _words,
    "group_loudness": _group_loudness,
}

# What docs/production.md recommends for parallel batch runs on Delta: steps in forked
# processes, the code location (and what a step needs first) imported once by the fork server.
PRELOAD = [__name__, f"{__package__}.parallel_warm"]
PARALLEL_EXECUTOR = dg.multiprocess_executor.configured(
    {"max_concurrent": 2, "start_method": {"forkserver": {"preload_modules": PRELOAD}}}
)


def definitions(
    store: mxd.MetaxyStore, *, batch_size: int = 10, executor=PARALLEL_EXECUTOR
) -> dg.Definitions:
    return mxd.build_definitions(
        store.graph,
        COMPUTES,
        {"clip": source},
        store=store,
        sensor_options={"max_batch_size": batch_size},
        executor=executor,
    )


def delta_definitions() -> dg.Definitions:
    g = graph()
    return definitions(mxd.MetaxyStore(graph=g, delta_uri=os.environ[DELTA_ENV]))


def metaxy_job() -> dg.JobDefinition:
    """The job, rebuilt in every process that runs one of its steps (once: Dagster asks often)."""
    return _job_at(os.environ[DELTA_ENV])


@functools.cache
def _job_at(delta: str) -> dg.JobDefinition:
    return delta_definitions().resolve_job_def("metaxy_job")


def execute_run(
    instance_ref: Any, delta: str, partition: str, selection: list[list[str]], tags: dict
) -> bool:
    """One run as a run launcher starts it: in a process of its own, steps in their own.

    (Dagster's in-process run execution is not thread-safe: runs in threads of one process
    deadlock on the logging module's lock.)
    """
    os.environ[DELTA_ENV] = delta  # inherited by this process's step processes
    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        result = dg.execute_job(
            dg.reconstructable(metaxy_job),
            instance,
            asset_selection=[dg.AssetKey(path) for path in selection],
            tags={**tags, "dagster/partition": partition},
        )
        return result.success
