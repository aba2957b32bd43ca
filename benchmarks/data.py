"""Deterministic benchmark data, shared by every runner (peer, floor, ours).

Usage:  python benchmarks/data.py [--data-dir /tmp/metaxy-bench-data] [--n 10000 100000 1000000]

Runs in either venv (needs polars and numpy only). Layout, for graph G in {simple, wide}
and N rows:

    DATA/G/N/meta.json            the graph (GRAPHS[G]) + expected increment sizes
    DATA/G/N/<root>.parquet       one file per root feature: `sample_id` (str) and one str
                                  column per field = that field's input version (content hash)
    DATA/G/N/video.stale.parquet  full rewrite of root `video` where `audio` changed for
                                  exactly 10% of the samples (other columns identical)
    DATA/G/N/stale_ids.parquet    `sample_id` of those 10% (for exact checks)

Phases every runner measures (only the resolve of the leaf increment is timed):
    new:   write every <root>.parquet; leaf empty        -> increment: N new rows
    stale: write every <root>.parquet, resolve the leaf and write all of it,
           then write video.stale.parquet (a full rewrite) -> increment: N/10 stale rows

All roots of one graph share the same sample ids, in the same (random-looking) order.
All values come from numpy's PCG64 with a fixed seed: same N -> byte-identical columns.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl

SEED = 20240611
DEFAULT_DATA_DIR = "/tmp/metaxy-bench-data"
DEFAULT_NS = (10_000, 100_000, 1_000_000)

CHANGED_ROOT = "video"  # the root rewritten in the stale phase
CHANGED_FIELD = "audio"  # the field whose input changes
STALE_FRACTION = 10  # 1 in 10 samples

# roots: feature key -> field keys.  leaf: field key -> {root key: [parent field keys]}.
# Every field has code_version "1". The leaf feature is keyed "leaf" in every graph.
GRAPHS: dict[str, dict] = {
    "simple": {
        "roots": {"video": ["audio", "frames"]},
        "leaf": {"out": {"video": ["audio", "frames"]}},
    },
    "wide": {
        "roots": {
            "video": ["audio", "frames", "text", "depth"],
            "sensor": ["imu", "gps", "lidar", "radar"],
        },
        "leaf": {
            "av": {"video": ["audio", "frames"], "sensor": ["imu", "gps"]},
            "ctx": {"video": ["text", "depth"], "sensor": ["lidar", "radar"]},
        },
    },
}

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_strings(rng: np.random.Generator, n: int, nbytes: int = 8) -> pl.Series:
    """n random lowercase hex strings of 2*nbytes characters (content-hash-like)."""
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    chars = np.empty((n, 2 * nbytes), dtype=np.uint8)
    chars[:, 0::2] = _HEX[raw >> 4]
    chars[:, 1::2] = _HEX[raw & 15]
    return pl.Series(chars.view(f"S{2 * nbytes}").ravel()).cast(pl.Utf8)


def case_dir(data_dir: str | Path, graph: str, n: int) -> Path:
    return Path(data_dir) / graph / str(n)


def expected(n: int) -> dict[str, dict[str, int]]:
    return {"new": {"new": n, "stale": 0}, "stale": {"new": 0, "stale": n // STALE_FRACTION}}


def generate(data_dir: str | Path, graph: str, n: int) -> Path:
    out = case_dir(data_dir, graph, n)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([SEED, n, list(GRAPHS).index(graph)])
    ids = hex_strings(rng, n, 8)
    assert ids.n_unique() == n, "sample id collision; change SEED"
    ids = ("s" + ids).alias("sample_id")
    for root, fields in GRAPHS[graph]["roots"].items():
        df = pl.DataFrame([ids] + [hex_strings(rng, n).alias(f) for f in fields])
        df.write_parquet(out / f"{root}.parquet")
        if root == CHANGED_ROOT:
            changed = np.zeros(n, dtype=bool)
            changed[rng.choice(n, size=n // STALE_FRACTION, replace=False)] = True
            mask = pl.Series(changed)
            new_values = hex_strings(rng, n)
            df = df.with_columns(
                pl.when(mask).then(new_values).otherwise(pl.col(CHANGED_FIELD)).alias(CHANGED_FIELD)
            )
            df.write_parquet(out / f"{root}.stale.parquet")
            df.filter(mask).select("sample_id").write_parquet(out / "stale_ids.parquet")
    meta = {
        "graph": graph,
        "n": n,
        "seed": SEED,
        "id_column": "sample_id",
        "roots": GRAPHS[graph]["roots"],
        "leaf": {"key": "leaf", "fields": GRAPHS[graph]["leaf"]},
        "code_version": "1",
        "stale_phase": {
            "rewritten_root": CHANGED_ROOT,
            "changed_field": CHANGED_FIELD,
            "file": f"{CHANGED_ROOT}.stale.parquet",
        },
        "expected": expected(n),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load_roots(
    data_dir: str | Path, graph: str, n: int
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """({root: frame}, the stale-phase rewrite of CHANGED_ROOT). Generates missing files."""
    d = case_dir(data_dir, graph, n)
    if not (d / "meta.json").exists():
        generate(data_dir, graph, n)
    roots = {r: pl.read_parquet(d / f"{r}.parquet") for r in GRAPHS[graph]["roots"]}
    return roots, pl.read_parquet(d / f"{CHANGED_ROOT}.stale.parquet")


def load_stale_ids(data_dir: str | Path, graph: str, n: int) -> set[str]:
    return set(pl.read_parquet(case_dir(data_dir, graph, n) / "stale_ids.parquet")["sample_id"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p.add_argument("--n", type=int, nargs="+", default=list(DEFAULT_NS))
    p.add_argument("--graph", nargs="+", default=list(GRAPHS), choices=list(GRAPHS))
    args = p.parse_args()
    for graph in args.graph:
        for n in args.n:
            print(generate(args.data_dir, graph, n))


if __name__ == "__main__":
    main()
