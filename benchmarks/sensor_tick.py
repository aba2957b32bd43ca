"""How long an increment-sensor tick takes over N samples, and its peak memory (DESIGN.md 7).

    .venv/bin/python benchmarks/sensor_tick.py --n 1000000 4000000 [--store duckdb|delta]

The `simple` graph (root `video` + `leaf`), batch mode, a root source that is a
`ChangeSource` (it reports the samples changed since a cursor). Each N runs in three
processes, so that each peak RSS is its own:

1. setup (untimed): write the root and the leaf for N samples, then one full sensor tick
   (full listing, reconciliation): it records the watermarks and the source's cursor.
2. ticks, each timed, in one fresh process (Dagster's cursor carried over from setup):
   - `nothing`: nothing changed since the cursor (the second such tick of the process:
     a sensor's code server is long-lived; `nothing_first` is the first);
   - `root`: 0.1% of the root's inputs changed: the source reports them, the root's
     increment finds them stale, the tick writes manifests and requests runs;
   - `leaf`: those root rows written (as their runs would, untimed) and their batches
     done: the leaf resolves only the touched samples from its watermark.
   Then the process's peak RSS.
3. listing: a root resolved from its full listing with nothing changed (what a source
   without `changes_since` costs each tick), against a floor: the same listing hashed and
   joined with the stored provenance in polars, no metaxy.

Prints one JSON line per N. Dagster's default sensor timeout is 60 s.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ours_runner import build_graph

import metaxy_dagster as mxd

SENSOR = "metaxy_increment_sensor"
CHANGED_EVERY = 1000  # 0.1%


def listing(n: int, version: int) -> pl.DataFrame:
    """Every sample's inputs; at version 1, every 1000th sample has new audio."""
    i = pl.int_range(n)
    audio = pl.format("a{}", i)
    if version:
        audio = pl.when(i % CHANGED_EVERY == 0).then(audio + "x").otherwise(audio)
    return pl.select(sample_id=pl.format("s{}", i), audio=audio, frames=pl.format("f{}", i))


class Feed:
    """A change source over `listing`: version 0, then 1; changes cost O(changed)."""

    def __init__(self, n: int, version: int) -> None:
        self.n = n
        self.version = version

    def __call__(self) -> pl.DataFrame:
        return listing(self.n, self.version)

    def changes_since(self, cursor: str | None) -> tuple[pl.DataFrame, str]:
        if cursor is None:
            return listing(self.n, self.version), str(self.version)
        if int(cursor) >= self.version:
            return listing(0, 0), str(self.version)
        i = pl.int_range(0, self.n, CHANGED_EVERY)
        changed = pl.select(
            sample_id=pl.format("s{}", i), audio=pl.format("a{}x", i), frames=pl.format("f{}", i)
        )
        return changed, str(self.version)


def store_resource(kind: str, where: Path) -> mxd.MetaxyStore:
    graph = build_graph("simple")
    if kind == "duckdb":
        return mxd.MetaxyStore(graph=graph, duckdb_path=str(where / "meta.duckdb"))
    return mxd.MetaxyStore(graph=graph, delta_uri=str(where / "delta"))


def definitions(resource_: mxd.MetaxyStore, feed: Feed) -> dg.Definitions:
    identity = {"video": lambda c, i: i.to_compute(), "leaf": lambda c, i: i.to_compute()}
    return mxd.build_definitions(
        resource_.graph,
        identity,
        {"video": feed},
        store=resource_,
        sensor_options={
            "max_batch_size": 10_000,
            "max_batches_per_tick": 10,
            "reconcile_every": 1000,
        },
    )


def tick(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None
) -> tuple[Any, float]:
    sensor = defs.resolve_sensor_def(SENSOR)
    with dg.build_sensor_context(
        instance=instance,
        instance_ref=instance.get_ref(),  # run requests resolve their dynamic partitions
        cursor=cursor,
        resources=defs.resources,
        definitions=defs,
    ) as context:
        start = time.perf_counter()
        data = sensor.evaluate_tick(context)
        seconds = time.perf_counter() - start
    return data, seconds


def setup(n: int, kind: str, where: Path) -> dict[str, Any]:
    resource_ = store_resource(kind, where)
    start = time.perf_counter()
    with resource_.open() as store:
        store.write("video", store.resolve_update("video", samples=listing(n, 0)).new)
        store.write("leaf", store.resolve_update("leaf").new)
    written = time.perf_counter() - start
    with dg.instance_for_test() as instance:
        data, seconds = tick(definitions(resource_, Feed(n, 0)), instance, None)
    return {"write_s": round(written, 1), "full_tick_s": round(seconds, 2), "cursor": data.cursor}


def ticks(n: int, kind: str, where: Path, cursor: str) -> dict[str, Any]:
    resource_ = store_resource(kind, where)
    feed = Feed(n, 0)
    out: dict[str, Any] = {}
    with dg.instance_for_test() as instance:
        defs = definitions(resource_, feed)
        # The first tick of a process builds its queries; a sensor's code server keeps
        # running, so the steady figure is the second one.
        data, out["nothing_first_s"] = tick(defs, instance, cursor)
        data, out["nothing_s"] = tick(defs, instance, data.cursor)
        assert not data.run_requests, data.skip_message
        feed.version = 1
        data, out["root_s"] = tick(defs, instance, data.cursor)
        out["root_runs"] = len(data.run_requests or [])
        # What the runs would do (untimed): write the changed root rows, finish the batches.
        with resource_.open() as store:
            changed, _ = feed.changes_since("0")
            store.write("video", store.resolve_update("video", samples=changed, partial=True).stale)
            for key in store.batches(status="pending")["batch_key"]:
                store.set_batch_status(key, "done")
        data, out["leaf_s"] = tick(defs, instance, data.cursor)
        out["leaf_runs"] = len(data.run_requests or [])
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def root_listing(n: int, kind: str, where: Path) -> dict[str, Any]:
    import polars_hash  # noqa: F401  (registers the .nchash namespace)

    resource_ = store_resource(kind, where)
    samples = listing(n, 1)  # what the store holds after the ticks phase
    with resource_.open() as store:
        stored = store.read(
            "video", columns=["metaxy_provenance__audio", "metaxy_provenance__frames"]
        )
        start = time.perf_counter()
        inc = store.resolve_update("video", samples=samples)
        ours = time.perf_counter() - start
        assert inc.is_empty
    # Floor: hash each field's input into its provenance, join with the stored ones, diff.
    start = time.perf_counter()
    hashed = samples.lazy().select(
        "sample_id",
        pl.col("audio").nchash.xxh3_64().alias("pa"),  # type: ignore[attr-defined]
        pl.col("frames").nchash.xxh3_64().alias("pf"),  # type: ignore[attr-defined]
    )
    moved = (
        hashed.join(stored.lazy(), on="sample_id", how="full")
        .filter(
            (pl.col("pa").cast(pl.String) != pl.col("metaxy_provenance__audio"))
            | (pl.col("pf").cast(pl.String) != pl.col("metaxy_provenance__frames"))
        )
        .select(pl.len())
        .collect()
    )
    floor = time.perf_counter() - start
    del moved
    return {"listing_ours_s": round(ours, 3), "listing_floor_polars_s": round(floor, 3)}


def child(argv: list[str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{argv[-1]} phase failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The ticks' own log (one line per feature: increment, how it was found, seconds).
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith(("video:", "leaf:"))]
    return result | ({"tick_log": lines} if lines else {})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[1_000_000, 4_000_000])
    p.add_argument("--store", choices=["duckdb", "delta"], default="duckdb")
    p.add_argument("--phase", choices=["setup", "ticks", "listing"], help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--cursor", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:  # one phase in this process, for its own peak RSS
        where, n = Path(args.dir), args.n[0]
        phases = {
            "setup": lambda: setup(n, args.store, where),
            "ticks": lambda: ticks(n, args.store, where, args.cursor),
            "listing": lambda: root_listing(n, args.store, where),
        }
        print(json.dumps(phases[args.phase]()))
        return
    for n in args.n:
        with tempfile.TemporaryDirectory() as tmp:
            base = ["--n", str(n), "--store", args.store, "--dir", tmp]
            made = child([*base, "--phase", "setup"])
            timed = child([*base, "--phase", "ticks", "--cursor", made.pop("cursor")])
            listed = child([*base, "--phase", "listing"])
            load = float(Path("/proc/loadavg").read_text().split()[0])
            print(
                json.dumps({"store": args.store, "n": n, **made, **timed, **listed, "load1": load}),
                flush=True,
            )


if __name__ == "__main__":
    main()
