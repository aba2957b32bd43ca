"""Render runner JSON lines as one markdown table of medians (ms).

Usage:  python benchmarks/table.py [--cpu] [--best] results/*.jsonl   (or pipe lines on stdin)
        --cpu   show the median process CPU time (median_cpu_ms) instead of wall time
        --best  when several runs give the same case, show the lowest median (default: the last)

One row per graph x phase x N, one column per impl/store, in order of first appearance.
Runs in either venv (standard library only).
"""

import fileinput
import json
import sys


def main() -> None:
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    sys.argv = [a for a in sys.argv if not a.startswith("--")]
    key = "median_cpu_ms" if "--cpu" in flags else "median_ms"
    cells: dict[tuple, dict[str, float]] = {}
    columns: list[str] = []
    with fileinput.input() as lines:
        rows = [json.loads(line) for line in lines if line.startswith("{")]
    for d in rows:
        col = d["impl"] if d["impl"].startswith("floor") else f"{d['impl']} {d['store']}"
        if col not in columns:
            columns.append(col)
        row = cells.setdefault((d["graph"], d["phase"], d["n"]), {})
        value = d.get(key, float("nan"))
        row[col] = min(value, row.get(col, value)) if "--best" in flags else value
    print("| graph | phase | N | " + " | ".join(columns) + " |")
    print("|---|---|---:|" + "---:|" * len(columns))
    for (graph, phase, n), row in sorted(
        cells.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])
    ):
        values = [
            f"{row[c]:,.0f}" if row.get(c, 0) >= 100 else f"{row[c]:.1f}" if c in row else ""
            for c in columns
        ]
        print(f"| {graph} | {phase} | {n:,} | " + " | ".join(values) + " |")


if __name__ == "__main__":
    main()
