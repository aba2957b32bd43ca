"""How long one increment-sensor tick takes over N samples with 1% changed (DESIGN.md 7).

    .venv/bin/python benchmarks/sensor_tick.py [--n 1000000] [--store duckdb|delta]

Setup (untimed): the `simple` graph's root and leaf fully written for N samples. Timed: one
tick of the increment sensor in batch mode, with a real sensor context on a temporary
instance, after the root's audio input changed for 1% of samples. The tick resolves every
feature, writes the batch manifests and returns the partition and run requests.
Dagster's default sensor timeout is 60 s.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ours_runner import build_graph

import metaxy_dagster as mxd


def inputs(n: int, changed_every: int | None) -> pl.DataFrame:
    i = pl.int_range(n)
    audio = pl.format("a{}", i)
    if changed_every:
        audio = pl.when(i % changed_every == 0).then(audio + "x").otherwise(audio)
    return pl.select(sample_id=pl.format("s{}", i), audio=audio, frames=pl.format("f{}", i))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--store", choices=["duckdb", "delta"], default="duckdb")
    args = p.parse_args()
    graph = build_graph("simple")
    with tempfile.TemporaryDirectory() as tmp:
        if args.store == "duckdb":
            resource = mxd.MetaxyStore(graph=graph, duckdb_path=f"{tmp}/meta.duckdb")
        else:
            resource = mxd.MetaxyStore(graph=graph, delta_uri=f"{tmp}/delta")
        store = resource.open()
        store.write("video", store.resolve_update("video", samples=inputs(args.n, None)).new)
        store.write("leaf", store.resolve_update("leaf").new)
        resource.close()
        source = {"frame": inputs(args.n, 100)}
        defs = mxd.build_definitions(
            graph,
            {"video": lambda c, i: i.to_compute(), "leaf": lambda c, i: i.to_compute()},
            {"video": lambda: source["frame"]},
            store=resource,
            sensor_options={"max_batch_size": 10_000, "max_batches_per_tick": 10},
        )
        sensor = defs.resolve_sensor_def("metaxy_increment_sensor")
        with (
            dg.instance_for_test() as instance,
            dg.build_sensor_context(
                instance=instance, resources=defs.resources, definitions=defs
            ) as ctx,
        ):
            start = time.perf_counter()
            result = sensor(ctx)
            seconds = time.perf_counter() - start
        runs = list(result.run_requests or []) if isinstance(result, dg.SensorResult) else []
        print(
            json.dumps(
                {
                    "store": args.store,
                    "n": args.n,
                    "changed": args.n // 100,
                    "tick_s": round(seconds, 2),
                    "run_requests": len(runs),
                }
            )
        )


if __name__ == "__main__":
    main()
