"""DeltaStore: one Delta Lake table per feature, on a directory or an object-store URI.

Reads are polars lazy scans of the Delta tables (projection and predicate pushdown: resolving
an increment reads only id and version columns). Every write is one Delta commit, so a crash
leaves the whole write or none of it; concurrent writers are serialised by Delta's optimistic
concurrency, and a conflicting commit is retried with backoff.

History grows with every rewrite, and reading the latest rows from the log costs a window
over all of it. A current-rows checkpoint beside the log (`_delta_current`) keeps reads flat:
reads take the checkpoint plus the log's tail, and writes rebuild it once the tail is long.
The log stays the truth (Delta has no transaction across two tables, so the checkpoint is
checked against the log on every read). `compact()` still rewrites each feature table to its
latest row per sample in one commit and, by default, moves the superseded rows to an archive
table that `history()` still reads (`copy_to` copies the current table only). A commit that
leaves one row per sample (the creating write, a compaction) says so in its metadata, and
reads then skip both the window and the checkpoint.

A creating commit is never retried blindly (see `_delta_commits`), so writers racing to
create a feature table keep every column. Errors of deltalake, pyarrow and polars (pyo3
panics included) leave as `StoreError`s naming the feature and its table.
"""

import logging
from collections.abc import Generator, Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import narwhals as nw
import polars as pl
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import SchemaMismatchError

from metaxy_core import _columns as C
from metaxy_core._errors import MetaxyError, StoreError, WriteValidationError
from metaxy_core._graph import FeatureGraph
from metaxy_core.stores._base import MetadataStore
from metaxy_core.stores._delta_commits import (
    commit_properties,
    latest_commit,
    log_rows,
    retry_on_conflict,
    vouches,
)
from metaxy_core.stores._delta_current import (
    CHECKPOINT_DIR,
    files_added_since,
    needs_rebuild,
    read_checkpoint,
    scan_current,
    write_checkpoint,
)
from metaxy_core.stores._delta_location import DeltaTableAt, canonical_location, is_local
from metaxy_core.stores._delta_scan import scan_table
from metaxy_core.stores._delta_small_files import is_system_table, merge_if_many
from metaxy_core.versioning._hashing import HashSettings
from metaxy_core.versioning._polars_engine import PolarsEngine

_log = logging.getLogger("metaxy")

# Superseded rows moved aside by compact(keep_history=True) live under this directory.
ARCHIVE_DIR = "metaxy_system__history"


class DeltaStore(MetadataStore):
    """A store of Delta Lake tables under one directory or object-store URI.

    Args:
        uri: a local directory (relative, or a ``file://`` URI) or an object-store URI such
            as ``s3://bucket/metaxy``; each feature is the Delta table
            ``{uri}/{feature_key.table_name}``. Kept as `uri` in canonical form (an
            absolute path, or a URI with its path percent-encoded once).
        graph: the feature graph.
        hash_settings: row hash settings; recorded on first write, checked on every open.
        storage_options: passed through to deltalake and polars (credentials, endpoints).

    Raises:
        StoreError: if `uri` is a local file rather than a directory, or a local path
            deltalake cannot use (e.g. holding a percent escape such as ``%20``).
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
        self.uri = canonical_location(uri)
        if is_local(self.uri) and Path(self.uri).is_file():
            raise StoreError(f"DeltaStore needs a directory, but {self.uri!r} is a file.")
        self.storage_options = dict(storage_options) if storage_options else None
        self.engine = PolarsEngine()
        self._tables: dict[str, DeltaTable] = {}
        # Per table path: (version, rows, one row per sample) of the last version looked at.
        self._facts: dict[str, tuple[int, int | None, bool]] = {}
        self._open()

    # -- primitives --------------------------------------------------------------------------

    def _path(self, table: str) -> str:
        return f"{self.uri}/{table}"

    def _delta_table(self, path: str) -> DeltaTable | None:
        """The Delta table at `path`, refreshed to its latest commit (None if never created)."""
        with self._failures_named("open", path):
            cached = self._tables.get(path)
            if cached is not None:
                cached.update_incremental()
                return cached
            if not DeltaTable.is_deltatable(path, storage_options=self.storage_options):
                return None
            table = DeltaTableAt(path, storage_options=self.storage_options)
        self._tables[path] = table
        return table

    def _exists(self, table: str) -> bool:
        path = self._path(table)
        if path in self._tables:
            return True
        with self._failures_named("open", path):
            return DeltaTable.is_deltatable(path, storage_options=self.storage_options)

    def _scan(self, table: str) -> nw.LazyFrame[Any]:
        return nw.from_native(self._scan_path(self._path(table)))

    def _scan_path(self, path: str) -> pl.LazyFrame:
        delta = self._delta_table(path)
        if delta is None:
            raise StoreError(f"No Delta table at {path!r}.")
        return scan_table(delta, self.storage_options)

    def _append(self, table: str, rows: pl.DataFrame) -> None:
        self._append_path(self._path(table), rows)
        self._refresh_current(table)
        if is_system_table(table):  # one small append per tick: merge their files now and then
            try:
                delta = self._delta_table(self._path(table))
            except StoreError as exc:  # the append has landed: never fail it afterwards
                _log.info("Small files of %s not checked: %s", table, exc)
                return
            if delta is not None:
                merge_if_many(delta, self._path(table))

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
                commit_properties=commit_properties(
                    creates=creates, vouch=rows.height if creates and one_write else None
                ),
            )

        try:
            with self._failures_named("append to", path):
                retry_on_conflict(commit, what=f"append to {path}")
        except StoreError as exc:
            if not isinstance(exc.__cause__, SchemaMismatchError):
                raise
            raise WriteValidationError(
                f"Cannot append to {self._label(path)}: the rows' column types do not match "
                f"the table ({exc.__cause__}). Nothing was written."
            ) from exc.__cause__

    def _create_if_absent(self, table: str, rows: pl.DataFrame) -> bool:
        # One commit that only the first creator wins: delta-rs must not move a lost
        # creation to the next version (see `_delta_commits`).
        path = self._path(table)
        if self._delta_table(path) is not None:
            return False
        try:
            with self._failures_named("create", path):
                write_deltalake(
                    path,
                    self._storable(path, rows),
                    mode="error",
                    storage_options=self.storage_options,
                    commit_properties=commit_properties(creates=True, vouch=None),
                )
        except StoreError:
            if self._delta_table(path) is not None:  # another writer created it first
                return False
            raise
        return True

    def _scan_latest(self, table: str, ids: Sequence[str]) -> nw.LazyFrame[Any]:
        # Skip the latest-row window when the table is known to hold one row per sample
        # (just created by one write, or just compacted): reads then cost a plain scan.
        path = self._path(table)
        delta = self._delta_table(path)
        with self._failures_named("read the log of", path):
            one_row_per_sample = delta is not None and self._log_facts(path, delta)[1]
        if delta is None:
            return super()._scan_latest(table, ids)
        if one_row_per_sample:
            return nw.from_native(scan_table(delta, self.storage_options))
        with self._failures_named("read the current rows of", path):
            return nw.from_native(self._current_of(delta, table, ids))

    # -- the current-rows checkpoint (see `_delta_current`) -------------------------------------

    def _checkpoint_path(self, table: str) -> str:
        return f"{self.uri}/{CHECKPOINT_DIR}/{table}"

    def _current_of(self, log: DeltaTable, table: str, ids: Sequence[str]) -> pl.LazyFrame:
        """The latest row per sample of `log` as loaded: checkpoint and tail, else the window."""
        checkpoint = read_checkpoint(self._delta_table(self._checkpoint_path(table)))
        path = self._path(table)
        current = scan_current(log, path, checkpoint, ids, self.storage_options)
        if current is not None:
            return current
        scan = scan_table(log, self.storage_options)
        latest = self.engine.latest(nw.from_native(scan), ids, C.WRITE_ID)
        return latest.to_native()

    def _refresh_current(self, table: str) -> None:
        """Rebuild a feature table's checkpoint when reads would pay for a long tail.

        The log commit is done: a failure here is logged, never raised (reads stay right).
        """
        ids = self._id_columns(table)
        if ids is None:
            return
        path = self._path(table)
        try:
            with self._failures_named("rebuild the current rows of", path):
                log = self._delta_table(path)
                if log is None or self._log_facts(path, log)[1]:
                    return
                checkpoint = read_checkpoint(self._delta_table(self._checkpoint_path(table)))
                if not needs_rebuild(log, path, checkpoint, self.storage_options):
                    return
                rows = self._current_of(log, table, ids).collect()
                write_checkpoint(
                    self._checkpoint_path(table), rows, log.version(), self.storage_options
                )
        except StoreError as exc:
            _log.warning("Current rows of %s not rebuilt (reads stay correct): %s", table, exc)

    def _log_position(self, table: str) -> str | None:
        # Delta versions order commits as they landed, whichever writer made them (write
        # ids do not: a slow writer commits an older id after a newer one).
        path = self._path(table)
        delta = self._delta_table(path)
        return "" if delta is None else str(delta.version())

    def _log_rows(self, tables: Sequence[str]) -> int | None:
        # The row counts the logs' add actions carry (file statistics): no data file is read.
        total = 0
        for table in tables:
            path = self._path(table)
            delta = self._delta_table(path)
            if delta is None:
                continue
            with self._failures_named("read the log of", path):
                rows = self._log_facts(path, delta)[0]
            if rows is None:
                return None
            total += rows
        return total

    def _log_facts(self, path: str, delta: DeltaTable) -> tuple[int | None, bool]:
        """Rows of the loaded version and whether they are one per sample (`vouches`).

        Kept per version: a Delta version's files and commit info never change.
        """
        version = delta.version()
        known = self._facts.get(path)
        if known is None or known[0] != version:
            rows = log_rows(delta)
            known = self._facts[path] = (version, rows, vouches(latest_commit(delta), rows))
        return known[1], known[2]

    def _scan_since(self, table: str, position: str) -> nw.LazyFrame[Any] | None:
        path = self._path(table)
        delta = self._delta_table(path)
        if delta is None:
            return None
        if not position:
            return nw.from_native(scan_table(delta, self.storage_options))
        with self._failures_named("read the log of", path):
            added = files_added_since(delta, path, int(position), self.storage_options)
        if added is None:  # files removed since (compaction, hard delete): start over
            return None
        if not added:
            return nw.from_native(scan_table(delta, self.storage_options).head(0))
        scans = [pl.scan_parquet(f, storage_options=self.storage_options) for f in added]
        return nw.from_native(pl.concat(scans, how="diagonal_relaxed"))

    def _storable(self, path: str, rows: pl.DataFrame) -> pl.DataFrame:
        """Give all-null columns a type Delta can store: the table's, else String."""
        nulls = [c for c, dtype in rows.schema.items() if dtype == pl.Null]
        if not nulls:
            return rows
        existing = self._delta_table(path)
        with self._failures_named("read the schema of", path):
            schema: Mapping[str, pl.DataType] = (
                pl.scan_delta(existing).collect_schema() if existing is not None else {}
            )
        return rows.cast({c: schema.get(c, pl.String()) for c in nulls})

    def _hard_delete(self, table: str, ids: pl.DataFrame) -> None:
        # Rows archived by compact() are part of the sample's history too.
        for path in (self._path(table), self._archive_path(table)):
            if self._delta_table(path) is not None:
                self._hard_delete_path(path, ids)
        self._refresh_current(table)  # the log lost files: the checkpoint no longer stands

    def _hard_delete_path(self, path: str, ids: pl.DataFrame) -> None:
        # Only the target's column names reach the predicate, quoted; the source's id
        # columns are renamed to fixed aliases, so no name can change what is matched.
        columns = list(ids.columns)
        aliases = {c: f"__mx_id_{i}" for i, c in enumerate(columns)}
        predicate = " AND ".join(f"t.{_quoted(c)} = s.{aliases[c]}" for c in columns)

        def commit() -> None:
            delta = self._delta_table(path)
            assert delta is not None, "the base class checks existence first"
            schema = pl.scan_delta(delta).collect_schema()
            source = ids.cast({c: schema[c] for c in columns}).rename(aliases)
            merge = delta.merge(
                source,
                predicate,
                source_alias="s",
                target_alias="t",
                commit_properties=commit_properties(creates=False, vouch=None),
            )
            merge.when_matched_delete().execute()

        with self._failures_named("hard delete from", path):
            retry_on_conflict(commit, what=f"hard delete from {path}")

    def _close(self) -> None:
        self._tables.clear()

    # -- errors --------------------------------------------------------------------------------

    def _label(self, path: str) -> str:
        """'feature video (Delta table /data/video)' for a feature's table, else the path."""
        table = path.rsplit("/", 1)[-1]
        for key in self.graph.keys:
            if key.table_name == table:
                return f"feature {key} (Delta table {path})"
        return f"Delta table {path}"

    @contextmanager
    def _failures_named(self, action: str, path: str) -> Generator[None]:
        """Turn deltalake, pyarrow and polars errors (and pyo3 panics) into `StoreError`s."""
        try:
            yield
        except MetaxyError:
            raise
        except BaseException as exc:
            if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
                raise  # KeyboardInterrupt, SystemExit
            raise StoreError(
                f"Could not {action} {self._label(path)}: {type(exc).__name__}: {exc}"
            ) from exc

    def _explain_failure(self, exc: BaseException) -> str:
        """Data files of the tables this store opened whose size differs from the log's."""
        if not is_local(self.uri):
            return ""
        damaged = [f for table in list(self._tables.values()) for f in _damaged_files(table)]
        if not damaged:
            return ""
        return (
            f" Damaged data file(s) (missing, or not the size the Delta log recorded): "
            f"{', '.join(damaged[:5])}{' ...' if len(damaged) > 5 else ''}. Restore them from a "
            "backup, or hard-delete and rewrite the samples they held."
        )

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
        with self._failures_named("read", self._archive_path(table)):
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
                with self._failures_named("compact", self._path(key.table_name)):
                    removed[key.path] = retry_on_conflict(
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
            commit_properties=commit_properties(creates=False, vouch=latest.height),
        )
        return removed


def _quoted(column: str) -> str:
    """A column name as a Delta (DataFusion) SQL identifier: backticks, doubled inside."""
    return "`" + column.replace("`", "``") + "`"


def _damaged_files(table: DeltaTable) -> list[str]:
    """Local data files of `table` that are missing or not the size its log recorded."""
    root = Path(unquote(table.table_uri.removeprefix("file://")))
    actions = pl.DataFrame(table.get_add_actions(flatten=True)).select("path", "size_bytes")
    damaged: list[str] = []
    for relative, size in actions.iter_rows():
        file = root / unquote(str(relative))
        if not file.is_file() or file.stat().st_size != size:
            damaged.append(str(file))
    return damaged
