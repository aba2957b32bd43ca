"""Watermarks: how far into its input logs a feature's last increment looked.

A feature's increment reads its upstreams' tables and its own. After each resolve the
store appends a mark for the feature to a system table: the log position of each of those
tables (`Storage._log_position`) read before the rows were, and the samples the increment
left to do (`pending`, by the feature's increment key). Every other sample was up to date
at those positions, so the next resolve only needs the samples touched by rows appended
since, plus the pending ones (`_incremental`).

A mark also holds a fingerprint of the graph and hash settings: any change of definitions
makes it void (those changes touch every sample by nature). Hard deletes and copies,
which remove rows or add old ones, void the marks they affect (`MarkTable.forget`).
"""

import base64
import hashlib
import io
import json
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._graph import FeatureGraph
from metaxy_core._keys import FeatureKey
from metaxy_core.stores import _writes as W
from metaxy_core.stores._system_tables import parsed_text
from metaxy_core.versioning._engine import Engine

WATERMARKS_TABLE = "metaxy_system__watermarks"
# Above this many pending samples a mark keeps no list: the next resolve takes the full path
# (a large backlog costs about a full diff anyway, and the mark stays small).
MAX_PENDING = 100_000
_VOID = "void"
# Pending keys are stored as base64 of a compressed Arrow IPC stream behind this prefix
# (typed, and ~20x faster both ways than the JSON of dicts marks held before, still read).
_IPC = "ipc:"

_fingerprints: "weakref.WeakKeyDictionary[FeatureGraph, str]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Mark:
    """Where a feature's last increment looked, and what it left to do."""

    fingerprint: str
    positions: dict[str, str]
    pending: pl.DataFrame | None  # None: unknown (too many, or voided)


def fingerprint(graph: FeatureGraph, settings: Any) -> str:
    """Definitions and hash settings a mark is valid for (cached per graph object)."""
    text = _fingerprints.get(graph)
    if text is None:
        text = _fingerprints[graph] = hashlib.sha256(graph.to_json().encode()).hexdigest()
    return f"{text}:{settings.describe()}"


def input_tables(graph: FeatureGraph, key: FeatureKey) -> list[str]:
    """The tables a feature's increment reads: its own, then its upstreams'."""
    return [key.table_name, *(d.feature.table_name for d in graph.spec(key).deps)]


def positions(
    log_position: Callable[[str], str | None], tables: Iterable[str]
) -> dict[str, str] | None:
    """The log position of each table now (None if the backend keeps none)."""
    out: dict[str, str] = {}
    for table in tables:
        position = log_position(table)
        if position is None:
            return None
        out[table] = position
    return out


class MarkTable:
    """The marks system table, on a store's storage primitives."""

    def __init__(
        self,
        *,
        exists: Callable[[str], bool],
        scan: Callable[[str], nw.LazyFrame[Any]],
        append: Callable[[str, pl.DataFrame], None],
        engine: Engine,
        writable: bool,
    ) -> None:
        self._exists = exists
        self._scan = scan
        self._append = append
        self._engine = engine
        self._writable = writable

    def read(self, graph: FeatureGraph, key: FeatureKey) -> Mark | None:
        """The feature's latest mark (None if it has none)."""
        if not self._exists(WATERMARKS_TABLE):
            return None
        rows = self._scan(WATERMARKS_TABLE).filter(nw.col("feature") == key.path)
        latest = (
            self._engine.latest(rows, ["feature"], C.WRITE_ID).collect(backend="polars").to_native()
        )
        if latest.is_empty():
            return None
        row = latest.row(0, named=True)
        pending = None if row["pending"] is None else _decode(graph, key, row["pending"])
        return Mark(row["fingerprint"], json.loads(row["positions"]), pending)

    def record(self, key: FeatureKey, mark: Mark, *, previous: Mark | None) -> None:
        """Append the feature's new mark, unless it equals `previous` or the store is read-only."""
        if not self._writable:
            return
        pending = mark.pending
        if pending is not None and pending.height > MAX_PENDING:
            pending = None
        if previous is not None and _same(previous, mark.fingerprint, mark.positions, pending):
            return
        if pending is None and previous is None:
            return  # no mark and nothing usable to record: the next resolve is full anyway
        text = None if pending is None else _encode(pending)
        self._append(WATERMARKS_TABLE, _row(key.path, mark.fingerprint, mark.positions, text))

    def forget(self, graph: FeatureGraph, keys: Iterable[FeatureKey]) -> None:
        """Void the marks of `keys` and of the features reading them (rows removed or copied)."""
        if not self._writable or not self._exists(WATERMARKS_TABLE):
            return
        changed = set(keys)
        affected = [
            k
            for k in graph.keys
            if k in changed or any(d.feature in changed for d in graph.spec(k).deps)
        ]
        if affected:
            self._append(
                WATERMARKS_TABLE, pl.concat([_row(k.path, _VOID, {}, None) for k in affected])
            )


def _row(
    feature: str, fingerprint: str, positions: Mapping[str, str], pending: str | None
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "feature": [feature],
            "fingerprint": [fingerprint],
            "positions": [json.dumps(dict(positions), sort_keys=True)],
            "pending": [pending],
            "recorded_at": [W.utc_now()],
            C.WRITE_ID: [W.new_write_id()],
        },
        schema={
            "feature": pl.String,
            "fingerprint": pl.String,
            "positions": pl.String,
            "pending": pl.String,
            "recorded_at": pl.Datetime("us", "UTC"),
            C.WRITE_ID: pl.String,
        },
    )


def _same(
    mark: Mark, fingerprint: str, positions: Mapping[str, str], pending: pl.DataFrame | None
) -> bool:
    if mark.fingerprint != fingerprint or mark.positions != dict(positions):
        return False
    if mark.pending is None or pending is None:
        return mark.pending is None and pending is None
    order = list(pending.columns)
    return mark.pending.sort(order).equals(pending.cast(mark.pending.schema).sort(order))


def _encode(pending: pl.DataFrame) -> str:
    buffer = io.BytesIO()
    pending.write_ipc(buffer, compression="zstd")
    return _IPC + base64.b64encode(buffer.getvalue()).decode("ascii")


def _decode(graph: FeatureGraph, key: FeatureKey, text: str) -> pl.DataFrame:
    """Pending ids, typed like the feature's increment key (JSON keeps dates as text)."""
    definition = graph.definition(key)
    spec = definition.spec
    schema = {c: definition.columns[c] for c in spec.parent_key}
    if text.startswith(_IPC):
        frame = pl.read_ipc(io.BytesIO(base64.b64decode(text[len(_IPC) :])))
        return frame.select(pl.col(c).cast(d) for c, d in schema.items())
    as_text = {c for c, d in schema.items() if d.is_temporal() or d.is_decimal()}
    frame = pl.DataFrame(
        json.loads(text), schema={c: pl.String() if c in as_text else d for c, d in schema.items()}
    )
    return frame.with_columns(parsed_text(c, schema[c]) for c in as_text)
