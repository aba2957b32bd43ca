"""`make bench`: every benchmark of this folder in one run, with a side-by-side summary.

    .venv/bin/python benchmarks/bench.py            # quick: N = 10,000 (about a minute)
    .venv/bin/python benchmarks/bench.py --full     # N = 10,000 and 1,000,000 (~15 min on 2 idle cores)
    make bench [BENCH_ARGS="--full --no-peer"]

Steps: generate the data (data.py), create the peer's venv (setup_peer.sh, PyPI only) if it
is missing, run the floor, ours and the peer (resolve of the leaf), write throughput, and
the history benchmarks (Delta, DuckDB); every runner's JSON lines go to `--out`
(default benchmarks/results/last-quick or last-full), then the summary table is printed
and saved as summary.md there. The peer is optional: if its venv cannot be created
(offline, PyPI slow or down) the run goes on without it and says so.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
PEER_PYTHON = HERE / ".peer-venv" / "bin" / "python"
PEER_SETUP_TIMEOUT_S = 600
# Which floor each store of ours is held against (the same engine).
FLOOR_OF = {"memory": "floor-polars", "delta": "floor-polars", "duckdb": "floor-duckdb"}


def run(out: Path, name: str, cmd: list[str], *, timeout: float | None = None) -> list[dict]:
    """Run one runner, keep its JSON lines in out/name.jsonl, return them."""
    print(f"-- {name}: {' '.join(str(c) for c in cmd)}", flush=True)
    try:
        done = subprocess.run(
            cmd, cwd=HERE, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        print(f"   {name} timed out after {timeout} s; skipped", flush=True)
        return []
    if done.returncode != 0:
        print(f"   {name} failed (exit {done.returncode}):\n{done.stderr[-2000:]}", flush=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    (out / f"{name}.jsonl").write_text("".join(line + "\n" for line in lines))
    for line in lines:
        print("   " + line, flush=True)
    return [json.loads(line) for line in lines]


def peer_ready() -> bool:
    """The peer's venv, created from PyPI if missing; False (with a message) if that fails."""
    if PEER_PYTHON.exists():
        return True
    print(f"-- creating the peer's venv (benchmarks/.peer-venv, up to {PEER_SETUP_TIMEOUT_S} s)")
    try:
        done = subprocess.run(
            ["bash", str(HERE / "setup_peer.sh")],
            capture_output=True,
            text=True,
            timeout=PEER_SETUP_TIMEOUT_S,
            check=False,
        )
        ok = done.returncode == 0 and PEER_PYTHON.exists()
        detail = done.stderr.strip().splitlines()[-1:] if not ok else []
    except subprocess.TimeoutExpired:
        ok, detail = False, [f"timed out after {PEER_SETUP_TIMEOUT_S} s"]
    if not ok:
        print(
            "   the peer's venv could not be created (PyPI unreachable or slow?): "
            f"{' '.join(detail)}. Going on without the peer; rerun with PyPI reachable, "
            "or run `bash benchmarks/setup_peer.sh` first."
        )
    return ok


def summary(lines: list[dict]) -> str:
    """Markdown: per case, wall ms (CPU ms) of every impl, and ours / floor on the same engine."""
    cells: dict[tuple, dict[str, dict]] = {}
    columns: list[str] = []
    for d in lines:
        if d.get("phase") not in ("new", "stale") or "median_ms" not in d:
            continue  # resolve cases only (history and writes have their own tables)
        col = d["impl"] if d["impl"].startswith("floor") else f"{d['impl']} {d['store']}"
        if col not in columns:
            columns.append(col)
        cells.setdefault((d["graph"], d["phase"], d["n"]), {})[col] = d
    ours = [c for c in columns if c.startswith("ours ")]
    ratio_cols = [c for c in ours if FLOOR_OF.get(c.split()[1]) in columns]
    head = ["graph", "phase", "N", *columns, *(f"{c} / floor" for c in ratio_cols)]
    out = ["| " + " | ".join(head) + " |", "|---|---|---:|" + "---:|" * (len(head) - 3)]
    for (graph, phase, n), row in sorted(
        cells.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])
    ):
        values = [_ms(row[c]) if c in row else "" for c in columns]
        for c in ratio_cols:
            floor = row.get(FLOOR_OF[c.split()[1]])
            values.append(_ratio(row.get(c), floor))
        out.append(f"| {graph} | {phase} | {n:,} | " + " | ".join(values) + " |")
    loads = [d["load1"] for d in lines if "load1" in d]
    if loads:
        out.append("")
        out.append(
            f"Load average (1 min) while cases ran: median {statistics.median(loads):.1f}, "
            f"max {max(loads):.1f} on {os.cpu_count()} cores. Cells: wall ms (process CPU ms); "
            "ratios: wall (CPU)."
        )
    return "\n".join(out)


def side_tables(lines: list[dict]) -> str:
    """Write throughput and history, one line per JSON record (ms)."""
    out = ["| write | store | N | first | rewrite | first / raw stored | first / raw input |"]
    out.append("|---|---|---:|---:|---:|---:|---:|")
    raw = {d["impl"]: d for d in lines if d.get("bench") == "write" and "raw_in_ms" in d}
    for d in lines:
        if d.get("bench") == "write" and d.get("impl") == "ours":
            base = raw[d["baseline"]]
            out.append(
                f"| {d['baseline']} {base['raw_stored_ms']:,.0f} / {base['raw_in_ms']:,.0f} | "
                f"{d['store']} | {d['n']:,} | {d['first_ms']:,.0f} | {d['rewrite_ms']:,.0f} | "
                f"{d['first_vs_raw_stored']:.2f}x | {d['first_vs_raw_in']:.2f}x |"
            )
    out += ["", "| history | N | after 1 rewrite | after 10 | ratio |", "|---|---:|---:|---:|---:|"]
    for store in ("delta", "duckdb"):
        runs = [d for d in lines if d.get("phase") == "history" and d.get("store") == store]
        first = next((d for d in runs if d.get("rewrites") == 1), None)
        last = next((d for d in runs if d.get("rewrites", 1) > 1 and not d.get("compacted")), None)
        if first and last:
            out.append(
                f"| {store} | {first['n']:,} | {first['median_ms']:,.0f} | "
                f"{last['median_ms']:,.0f} | {last['median_ms'] / first['median_ms']:.2f}x |"
            )
    return "\n".join(out)


def _ms(d: dict) -> str:
    wall = f"{d['median_ms']:,.0f}" if d["median_ms"] >= 100 else f"{d['median_ms']:.1f}"
    cpu = d.get("median_cpu_ms")
    return wall if cpu is None else f"{wall} ({cpu:,.0f})"


def _ratio(ours: dict | None, floor: dict | None) -> str:
    if ours is None or floor is None:
        return ""
    wall = ours["median_ms"] / floor["median_ms"]
    if "median_cpu_ms" in ours and "median_cpu_ms" in floor:
        return f"{wall:.2f}x ({ours['median_cpu_ms'] / floor['median_cpu_ms']:.2f}x)"
    return f"{wall:.2f}x"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="N = 10,000 and 1,000,000")
    p.add_argument("--no-peer", action="store_true", help="skip the peer")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    ns = [10_000, 1_000_000] if args.full else [10_000]
    big = ns[-1]
    out = args.out or HERE / "results" / ("last-full" if args.full else "last-quick")
    out.mkdir(parents=True, exist_ok=True)
    sizes = [str(n) for n in ns]
    rounds = ["--rounds", str(args.rounds)]
    run(out, "data", [PYTHON, "data.py", "--n", *sizes])
    lines = run(out, "floor", [PYTHON, "floor.py", "--n", *sizes, *rounds])
    lines += run(out, "ours", [PYTHON, "ours_runner.py", "--n", *sizes, *rounds])
    if not args.no_peer and peer_ready():
        lines += run(out, "peer", [str(PEER_PYTHON), "peer_runner.py", "--n", *sizes, *rounds])
    lines += run(out, "write", [PYTHON, "write_throughput.py", "--n", str(big), *rounds])
    for store in ("delta", "duckdb"):
        history = [PYTHON, f"history_{store}.py", "--n", str(big), *rounds]
        lines += run(out, f"history-{store}", history)
    table = summary(lines) + "\n\n" + side_tables(lines)
    (out / "summary.md").write_text(table + "\n")
    print("\n" + table)
    print(f"\nJSON lines and summary.md in {out}")


if __name__ == "__main__":
    main()
