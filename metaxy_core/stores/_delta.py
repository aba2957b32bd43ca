"""DeltaStore: one Delta Lake table per feature, on a directory or an object-store URI.

Reads are polars lazy scans of the Delta tables (projection and predicate pushdown: resolving
an increment reads only id and version columns). Every write is one Delta commit, so a crash
leaves the whole write or none of it; concurrent writers are serialised by Delta's optimistic
concurrency, and a conflicting commit is retried with backoff.

History grows with every rewrite, and reading the latest rows costs a window over all of
it. We chose an explicit `compact()` over a current-rows table kept beside the log: Delta has
no transaction across two tables, so a second table would break "one write, one commit".
`compact()` rewrites each feature table to its latest row per sample in one commit and, by
default, moves the superseded rows to an archive table that `history()` still reads
(`copy_to` copies the current table only). A commit that leaves one row per sample (the
creating write, a compaction) says so in its metadata, and reads then skip the window.
"""

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import narwhals as nw
import polars as pl
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, SchemaMismatchError

from metaxy_core import _columns as C
from metaxy_core._errors import StoreError, WriteValidationError
from metaxy_core._graph import FeatureGraph
from metaxy_core.stores._base import MetadataStore
from metaxy_core.versioning._hashing import HashSettings
from metaxy_core.versioning._polars_engine import PolarsEngine

T = TypeVar("T")

# Superseded rows moved aside by compact(keep_history=True) live under this directory.
ARCHIVE_DIR = "metaxy_system__history"
# Commit metadata key: the table held this many rows after the commit, one per sample.
_ONE_ROW_PER_SAMPLE = "metaxy.one_row_per_sample"
_MAX_ATTEMPTS = 12
_FIRST_BACKOFF_S = 0.02
_MAX_BACKOFF_S = 1.0
# Messages of delta-rs errors that mean "another writer committed first: try again".
_CONFLICT_MARKERS = ("conflict", "concurrent", "already exists", "version mismatch")


class DeltaStore(MetadataStore):
    """A store of Delta Lake tables under one directory or object-store URI.

    Args:
        uri: a local directory or a URI such as ``s3://bucket/metaxy``; each feature is the
            Delta table ``{uri}/{feature_key.table_name}``.
        graph: the feature graph.
        hash_settings: row hash settings; recorded on first write, checked on every open.
        storage_options: passed through to deltalake and polars (credentials, endpoints).

    Raises:
        StoreError: if `uri` is a local file rather than a directory.
        HashSettingsMismatchError: if the store was created with other hash settings.

    Example:
        >>> store = DeltaStore("/tmp/metaxy", graph)  # doctest: +SKIP
        >>> store.resolve_update("crop").counts()     # doctest: +SKIP
    """

    def __init__(
        self,
        uri: str | Path,
        graph: FeatureGraph,
        *,
        hash_settings: HashSettings | None = None,
        storage_options: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(graph, hash_settings=hash_settings)
        self.uri = str(uri).rstrip("/")
        if "://" not in self.uri and Path(self.uri).is_file():
            raise StoreError(f"DeltaStore needs a directory, but {self.uri!r} is a file.")
        self.storage_options = dict(storage_options) if storage_options else None
        self.engine = PolarsEngine()
        self._tables: dict[str, DeltaTable] = {}
        self._open()

    # -- primitives --------------------------------------------------------------------------

    def _path(self, table: str) -> str:
        return f"{self.uri}/{table}"

    def _delta_table(self, path: str) -> DeltaTable | None:
        """The Delta table at `path`, refreshed to its latest commit (None if never created)."""
        cached = self._tables.get(path)
        if cached is not None:
            cached.update_incremental()
            return cached
        if not DeltaTable.is_deltatable(path, storage_options=self.storage_options):
            return None
        self._tables[path] = table = DeltaTable(path, storage_options=self.storage_options)
        return table

    def _exists(self, table: str) -> bool:
        path = self._path(table)
        return path in self._tables or DeltaTable.is_deltatable(
            path, storage_options=self.storage_options
        )

    def _scan(self, table: str) -> nw.LazyFrame[Any]:
        return nw.from_native(self._scan_path(self._path(table)))

    def _scan_path(self, path: str) -> pl.LazyFrame:
        delta = self._delta_table(path)
        if delta is None:
            raise StoreError(f"No Delta table at {path!r}.")
        return pl.scan_delta(delta)

    def _append(self, table: str, rows: pl.DataFrame) -> None:
        self._append_path(self._path(table), rows)

    def _append_path(self, path: str, rows: pl.DataFrame) -> None:
        one_write = C.WRITE_ID in rows.columns and rows.get_column(C.WRITE_ID).n_unique() == 1

        def commit() -> None:
            creates = self._delta_table(path) is None
            write_deltalake(
                path,
                self._storable(path, rows),
                mode="append",
                schema_mode="merge",
                storage_options=self.storage_options,
                # A table created by one write holds one row per sample: say so.
                commit_properties=_vouch_unique(rows.height) if creates and one_write else None,
            )

        try:
            _retry_on_conflict(commit, what=f"append to {path}")
        except SchemaMismatchError as exc:
            raise WriteValidationError(
                f"Cannot append to {path}: the rows' column types do not match the table ({exc}). "
                "Nothing was written."
            ) from exc

    def _scan_latest(self, table: str, ids: Sequence[str]) -> nw.LazyFrame[Any]:
        # Skip the latest-row window when the table is known to hold one row per sample
        # (just created by one write, or just compacted): reads then cost a plain scan.
        delta = self._delta_table(self._path(table))
        if delta is not None and _holds_one_row_per_sample(delta):
            return nw.from_native(pl.scan_delta(delta))
        return super()._scan_latest(table, ids)

    def _storable(self, path: str, rows: pl.DataFrame) -> pl.DataFrame:
        """Give all-null columns a type Delta can store: the table's, else String."""
        nulls = [c for c, dtype in rows.schema.items() if dtype == pl.Null]
        if not nulls:
            return rows
        existing = self._delta_table(path)
        schema: Mapping[str, pl.DataType] = (
            pl.scan_delta(existing).collect_schema() if existing is not None else {}
        )
        return rows.cast({c: schema.get(c, pl.String()) for c in nulls})

    def _hard_delete(self, table: str, ids: pl.DataFrame) -> None:
        # Rows archived by compact() are part of the sample's history too.
        for path in (self._path(table), self._archive_path(table)):
            if self._delta_table(path) is not None:
                self._hard_delete_path(path, ids)

    def _hard_delete_path(self, path: str, ids: pl.DataFrame) -> None:
        columns = list(ids.columns)
        predicate = " AND ".join(f"t.`{c}` = s.`{c}`" for c in columns)

        def commit() -> None:
            delta = self._delta_table(path)
            assert delta is not None, "the base class checks existence first"
            schema = pl.scan_delta(delta).collect_schema()
            source = ids.cast({c: schema[c] for c in columns})
            merge = delta.merge(source, predicate, source_alias="s", target_alias="t")
            merge.when_matched_delete().execute()

        _retry_on_conflict(commit, what=f"hard delete from {path}")

    def _close(self) -> None:
        self._tables.clear()

    # -- history and compaction ----------------------------------------------------------------

    def _archive_path(self, table: str) -> str:
        return f"{self.uri}/{ARCHIVE_DIR}/{table}"

    def history(self, feature: Any) -> pl.DataFrame:
        """Every row ever written for the feature, archived ones included, oldest first."""
        key, table = self._table(feature)
        current = super().history(key)
        if self._delta_table(self._archive_path(table)) is None:
            return current
        ids = list(self.graph.spec(key).id_columns)
        archived = self._scan_path(self._archive_path(table)).collect()
        # A crash between compaction's two commits can leave a row in both tables.
        both = pl.concat([archived, current], how="diagonal_relaxed").unique(
            subset=[*ids, C.WRITE_ID], keep="first"
        )
        return both.select(current.columns).sort(C.WRITE_ID, *ids)

    def compact(
        self, features: Iterable[Any] | None = None, *, keep_history: bool = True
    ) -> dict[str, int]:
        """Rewrite feature tables to their latest row per sample, so reads stay fast.

        Each table is replaced in one Delta commit (latest rows, soft-delete markers
        included); concurrent appends are kept. With `keep_history`, the superseded rows
        are first appended to an archive table that `history()` reads; without it they
        stay reachable only through Delta time travel until the table is vacuumed.

        Args:
            features: keys, specs or classes; all written features by default.
            keep_history: move superseded rows to the archive instead of dropping them.

        Returns:
            How many superseded rows each compacted feature had (by feature path).

        Example:
            >>> store.compact(["video"])  # doctest: +SKIP
            {'video': 9000000}
        """
        keys = (
            [self.graph.spec(f).key for f in features] if features is not None else self.graph.keys
        )
        removed: dict[str, int] = {}
        for key in keys:
            if self._exists(key.table_name):
                removed[key.path] = _retry_on_conflict(
                    lambda key=key: self._compact_table(
                        key.table_name, list(self.graph.spec(key).id_columns), keep_history
                    ),
                    what=f"compact {key}",
                )
        return removed

    def _compact_table(self, table: str, ids: list[str], keep_history: bool) -> int:
        snapshot = self._delta_table(self._path(table))
        assert snapshot is not None, "compact() checks existence first"
        return self._compact_snapshot(snapshot, table, ids, keep_history)

    def _compact_snapshot(
        self, snapshot: DeltaTable, table: str, ids: list[str], keep_history: bool
    ) -> int:
        scan = pl.scan_delta(snapshot)
        # The same rule as the engine's latest(): the greatest write id per sample wins.
        is_latest = pl.col(C.WRITE_ID) == pl.col(C.WRITE_ID).max().over(ids)
        superseded = scan.filter(~is_latest)
        if keep_history:
            archived = superseded.collect()
            if archived.is_empty():
                return 0
            self._append_path(self._archive_path(table), archived)
            removed = archived.height
        else:
            removed = superseded.select(pl.len()).collect().item()
            if removed == 0:
                return 0
        # Overwriting through the snapshot we read removes only the files it saw: rows
        # appended concurrently survive, and a conflicting delete makes the commit fail.
        latest = scan.filter(is_latest).collect()
        write_deltalake(
            snapshot,
            latest,
            mode="overwrite",
            storage_options=self.storage_options,
            commit_properties=_vouch_unique(latest.height),
        )
        return removed


def _vouch_unique(rows: int) -> CommitProperties:
    """Commit metadata saying: after this commit the table holds `rows` rows, one per sample."""
    return CommitProperties(custom_metadata={_ONE_ROW_PER_SAMPLE: str(rows)})


def _holds_one_row_per_sample(delta: DeltaTable) -> bool:
    """True if the latest commit vouched for one row per sample and the row count agrees.

    A commit that vouched wrongly after losing a race (an append that found the table
    created meanwhile, a compaction next to a concurrent append) is caught by the count.
    """
    # history(1) may return more than one entry on a refreshed table: pick the newest.
    last = max(delta.history(1), key=lambda commit: commit.get("version", -1))
    vouched = last.get(_ONE_ROW_PER_SAMPLE)
    if vouched is None or last.get("version") != delta.version():
        return False
    counts = pl.DataFrame(delta.get_add_actions(flatten=True)).get_column("num_records")
    return counts.null_count() == 0 and str(counts.sum()) == vouched


def _is_conflict(exc: Exception) -> bool:
    if isinstance(exc, CommitFailedError):
        return True
    message = str(exc).lower()
    return any(marker in message for marker in _CONFLICT_MARKERS)


def _retry_on_conflict(action: Callable[[], T], *, what: str) -> T:
    """Run `action`, retrying with jittered exponential backoff while commits conflict."""
    delay = _FIRST_BACKOFF_S
    for attempt in range(1, _MAX_ATTEMPTS + 1):
        try:
            return action()
        except (CommitFailedError, DeltaError) as exc:
            if isinstance(exc, SchemaMismatchError) or not _is_conflict(exc):
                raise
            if attempt == _MAX_ATTEMPTS:
                raise StoreError(
                    f"Could not {what}: {_MAX_ATTEMPTS} attempts conflicted with concurrent "
                    f"writers (last error: {exc}). The failed attempts wrote nothing."
                ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _MAX_BACKOFF_S)
    raise AssertionError("unreachable")
