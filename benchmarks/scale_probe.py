"""One large resolve, measured for docs/scaling.md: wall time and the process's peak memory.

    .venv/bin/python benchmarks/scale_probe.py --store delta postgres --n 10000000 --phase new

Writes the phase's starting state once (untimed, as ours_runner.py does), then, in a fresh
child process per store, opens the store and resolves the leaf of graph `simple`; the child
reports the resolve's wall time and its peak resident memory (the whole child: Python,
polars and the collected increment; the database server's memory is not counted).
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import ours_runner as R
from data import DEFAULT_DATA_DIR, load_roots

import metaxy_core as mx


def peak_rss_mib() -> float:
    """This process's peak resident memory, from /proc (VmHWM) where there is one.

    `ru_maxrss` is not the child's own on Linux: a forked child starts with its parent's
    high-water mark and keeps it across exec, so it reported the parent's setup (roots
    and the written rows held in memory: ~7 GiB at 10M) whatever the resolve used.
    VmHWM belongs to the address space, which exec replaces.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(kind: str, where: str, n: int, hash_name: str) -> None:
    graph = R.build_graph("simple")
    store = R.opener(kind, graph, mx.HashSettings(hash_name))(Path(where))
    start = time.perf_counter()
    increment = store.resolve_update("leaf")
    seconds = time.perf_counter() - start
    peak_mib = peak_rss_mib()
    print(
        json.dumps(
            {
                "counts": increment.counts(),
                "seconds": round(seconds, 2),
                "peak_rss_mib": round(peak_mib),
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", nargs="+", default=["delta", "postgres"])
    p.add_argument("--n", type=int, default=10_000_000)
    p.add_argument("--phase", default="new", choices=["new", "stale"])
    p.add_argument("--hash", default="md5")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.n, args.hash)
        return
    roots, rewrite = load_roots(args.data_dir, "simple", args.n)
    with R.postgres_server(None) if "postgres" in args.store else _nothing():
        for kind in args.store:
            with tempfile.TemporaryDirectory(prefix="metaxy-scale-") as tmp:
                where = Path(tmp) / (R.POSTGRES.fresh() if kind == "postgres" else "store")
                where.mkdir()
                if kind == "postgres":
                    R.POSTGRES.execute(f'CREATE DATABASE "{where.name}"')
                graph = R.build_graph("simple")
                start = time.perf_counter()
                store = R.opener(kind, graph, mx.HashSettings(args.hash))(where)
                R.setup(store, "simple", args.phase, roots, rewrite)
                store.close()
                setup_s = round(time.perf_counter() - start, 1)
                cmd = [
                    sys.executable,
                    __file__,
                    "--n",
                    str(args.n),
                    "--hash",
                    args.hash,
                    "--child",
                    kind,
                    str(where),
                ]
                env_url = {"METAXY_PROBE_PG": R.POSTGRES.server}
                out = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**__import__("os").environ, **env_url},
                )
                result = json.loads(out.stdout.strip().splitlines()[-1])
                print(
                    json.dumps(
                        {
                            "store": kind,
                            "n": args.n,
                            "phase": args.phase,
                            "hash": args.hash,
                            "setup_s": setup_s,
                            **result,
                        }
                    ),
                    flush=True,
                )


class _nothing:
    def __enter__(self) -> None: ...
    def __exit__(self, *exc: object) -> None: ...


if __name__ == "__main__":
    if len(sys.argv) > 1 and "--child" in sys.argv:
        import os

        R.POSTGRES.server = os.environ.get("METAXY_PROBE_PG", "")
    main()
