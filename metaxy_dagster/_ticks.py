"""One increment-sensor tick: its cursor, how it resolves each feature, and its log.

The cursor is Dagster's (kept per sensor by the instance): a JSON object with the tick
count and, per root whose source is a `ChangeSource`, that source's own cursor. A tick
resolves roots from what their change source reported since its cursor (`partial=True`)
and other features from their watermarks; every `reconcile_every` ticks it lists every
root fully and runs `store.reconcile()`, which reports (in the tick's log) any feature
whose incremental increment disagreed with the full diff.
"""

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import dagster as dg

import metaxy_core as mx


@runtime_checkable
class ChangeSource(Protocol):
    """A root source that can also say which samples changed since a cursor.

    Pass one in `sources=` wherever a source function goes: called with no argument it
    lists every sample (runs and full ticks use that); the increment sensor calls
    `changes_since` with the cursor it kept from the previous tick, so a tick costs the
    change, not the listing. Examples: files modified since a timestamp, a CDC stream's
    offset. Deleted samples are found by the periodic full listing (`reconcile_every`).

    Example:
        >>> class Recent:  # doctest: +SKIP
        ...     def __call__(self): return list_all()
        ...     def changes_since(self, cursor):
        ...         now = time.time()
        ...         return list_modified_after(float(cursor or 0)), str(now)
    """

    def __call__(self) -> Any:
        """Every sample: ids plus one input version column per field."""
        ...

    def changes_since(self, cursor: str | None) -> tuple[Any, str]:
        """Samples added or changed since `cursor` (None: all of them), and the new cursor.

        The new cursor must cover everything returned: take it before listing, not after.
        """
        ...


@dataclass
class TickCursor:
    """What the sensor keeps between ticks (Dagster's cursor, as JSON)."""

    ticks: int = 0
    sources: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> "TickCursor":
        if not text:
            return cls()
        try:
            data = json.loads(text)
            return cls(int(data["ticks"]), {str(k): str(v) for k, v in data["sources"].items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            return cls()  # a cursor from another version: start with a full tick

    def dumps(self) -> str:
        return json.dumps({"ticks": self.ticks, "sources": self.sources}, sort_keys=True)


class Tick:
    """Resolves the features of one tick and keeps what each resolve did."""

    def __init__(
        self,
        context: dg.SensorEvaluationContext,
        sources: Mapping[mx.FeatureKey, Any],
        *,
        reconcile_every: int | None,
    ) -> None:
        self.context = context
        self.sources = sources
        self.cursor = TickCursor.parse(context.cursor)
        self.full = reconcile_every is not None and self.cursor.ticks % reconcile_every == 0
        self._next_sources: dict[str, str] = {}
        self.lines: list[str] = []

    def resolve(self, store: mx.MetadataStore, key: mx.FeatureKey) -> mx.Increment:
        """The feature's increment: roots from their source, the others from watermarks."""
        start = time.perf_counter()
        source = self.sources.get(key)
        how = ""
        if source is None:
            increment = store.resolve_update(key)
        elif isinstance(source, ChangeSource):
            since = None if self.full else self.cursor.sources.get(key.path)
            rows, self._next_sources[key.path] = source.changes_since(since)
            increment = store.resolve_update(key, samples=rows, partial=since is not None)
            how = " (full listing)" if since is None else " (change source)"
        else:
            increment = store.resolve_update(key, samples=source())
            how = " (listing)"
        seconds = time.perf_counter() - start
        self.lines.append(
            f"{increment.describe()}; by {increment.resolved_by}{how}, {seconds:.2f} s"
        )
        return increment

    def reconcile(self, store: mx.MetadataStore) -> None:
        """On full ticks: compare incremental with full resolution of every feature."""
        if not self.full:
            return
        start = time.perf_counter()
        differed = store.reconcile()
        seconds = time.perf_counter() - start
        for path, text in differed.items():
            self.context.log.warning(
                f"Reconciliation: {path}'s incremental increment disagreed with the full diff "
                f"({text}); its watermark was reset to the full answer."
            )
        self.lines.append(
            f"reconciliation: {len(differed)} disagreement(s) in {seconds:.2f} s"
            + (f" ({', '.join(differed)})" if differed else "")
        )

    def finish(self, waiting: frozenset[mx.FeatureKey]) -> None:
        """Log the tick's work and keep its cursor.

        On a tick that is not full, a root some of whose changed samples wait (in an open
        batch, held back for a retry or quarantined) keeps its old source cursor, so those
        changes are reported again; a full tick lists them all again anyway.
        """
        for key in waiting if not self.full else ():
            if key.path in self._next_sources and key.path in self.cursor.sources:
                self._next_sources[key.path] = self.cursor.sources[key.path]
        sources = {**self.cursor.sources, **self._next_sources}
        after = TickCursor(self.cursor.ticks + 1, sources)
        kind = "full tick (listings and reconciliation)" if self.full else "tick"
        self.context.log.info(f"metaxy {kind} {self.cursor.ticks}:\n" + "\n".join(self.lines))
        self.context.update_cursor(after.dumps())
