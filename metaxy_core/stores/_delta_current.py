"""DeltaStore's current-rows checkpoint: the latest row per sample, kept beside the log.

Reading the latest rows from the append log costs a window over every row ever written, so
it grows with each rewrite. The checkpoint is a second Delta table
(`{uri}/metaxy_system__current/{table}`) holding the latest row per sample as of one log
version, which its commit records. A read takes the checkpoint plus the log's tail (the
data files the log gained since that version) and settles only the samples the tail
touches, by the same rule as everywhere (the greatest write id wins, so an older row that
lands late, a copy or a slow writer, never replaces a newer one).

The log stays the only truth, and the checkpoint is never trusted alone:

- a checkpoint is rewritten in one Delta commit, so a writer killed while rebuilding it
  leaves the previous one, whose recorded version makes the tail cover what it lacks;
- if the log lost any file the checkpoint's version had (a hard delete, a compaction, a
  vacuum or `OPTIMIZE` run by hand), the checkpoint is ignored until rebuilt;
- rebuilding happens after a write, once the tail holds a quarter of the checkpoint's rows
  or many files; it never fails the write that triggered it (the log commit is done).
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import narwhals as nw
import polars as pl
from deltalake import CommitProperties, DeltaTable, write_deltalake

from metaxy_core import _columns as C
from metaxy_core.stores._delta_commits import latest_commit
from metaxy_core.stores._delta_location import DeltaTableAt
from metaxy_core.stores._delta_scan import scan_table
from metaxy_core.versioning._polars_engine import PolarsEngine

_log = logging.getLogger("metaxy")
_ENGINE = PolarsEngine()

CHECKPOINT_DIR = "metaxy_system__current"
# Commit metadata of a checkpoint: the log version it reflects.
LOG_VERSION = "metaxy.current_rows_of_log_version"
# Reads settle the log's tail over the checkpoint; tests switch it off to show what it protects.
CHECK_TAIL = True
# Rebuild once the tail holds this share of the checkpoint's rows, or this many files.
REBUILD_SHARE = 0.25
REBUILD_FILES = 64
# Superseded checkpoint files stay this long for readers still holding an older version.
KEEP_OLD_FILES_HOURS = 1


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint table and the log version it holds the latest rows of."""

    table: DeltaTable
    log_version: int


def read_checkpoint(table: DeltaTable | None) -> Checkpoint | None:
    """The checkpoint in `table` (None if absent or not written by a rebuild)."""
    if table is None:
        return None
    last = latest_commit(table)
    version = last.get(LOG_VERSION) if last is not None else None
    if version is None:
        return None
    return Checkpoint(table, int(version))


def tail_files(
    log: DeltaTable, path: str, checkpoint: Checkpoint, storage_options: Mapping[str, str] | None
) -> list[str] | None:
    """The data files `log` gained since the checkpoint's version, oldest first.

    None if the checkpoint cannot stand for the log: a version the log does not have yet
    (a recreated table), or a file the log has since removed.
    """
    return files_added_since(log, path, checkpoint.log_version, storage_options)


def files_added_since(
    log: DeltaTable, path: str, version: int, storage_options: Mapping[str, str] | None
) -> list[str] | None:
    """The data files `log` gained after `version`, oldest first.

    None if `version` cannot stand for the log: one it does not have (a recreated table), or
    a file the log has since removed (compaction, hard delete).
    """
    now = log.version()
    if version > now:
        return None
    if version == now:
        return []
    options = dict(storage_options) if storage_options else None
    had = set(DeltaTableAt(path, version=version, storage_options=options).file_uris())
    files = log.file_uris()
    if not had <= set(files):
        return None
    return [uri for uri in files if uri not in had]


def scan_current(
    log: DeltaTable,
    path: str,
    checkpoint: Checkpoint | None,
    ids: Sequence[str],
    storage_options: Mapping[str, str] | None,
) -> pl.LazyFrame | None:
    """The latest row per sample from the checkpoint and the log's tail (None: no usable one)."""
    if checkpoint is None:
        return None
    base = scan_table(checkpoint.table, storage_options)
    if not CHECK_TAIL:
        return base
    tail = tail_files(log, path, checkpoint, storage_options)
    if tail is None:
        return None
    if not tail:
        return base
    schema = scan_table(log, storage_options).collect_schema()
    rows = pl.scan_parquet(
        tail,
        schema=schema,
        missing_columns="insert",
        storage_options=dict(storage_options) if storage_options else None,
    )
    # Only the samples the tail touches are settled: a tail row replaces the checkpoint's
    # row when its write id is greater (joins, not a window over checkpoint and tail).
    newest: pl.LazyFrame = _ENGINE.latest(nw.from_native(rows), ids, C.WRITE_ID).to_native()
    stored = base.select(*ids, pl.col(C.WRITE_ID).alias("__mx_stored_write"))
    newer = (
        newest.join(stored, on=list(ids), how="left")
        .filter(
            pl.col("__mx_stored_write").is_null()
            | (pl.col(C.WRITE_ID) > pl.col("__mx_stored_write"))
        )
        .drop("__mx_stored_write")
    )
    kept = base.join(newer.select(*ids), on=list(ids), how="anti")
    return pl.concat([kept, newer], how="diagonal").select(schema.names())


def needs_rebuild(
    log: DeltaTable,
    path: str,
    checkpoint: Checkpoint | None,
    storage_options: Mapping[str, str] | None,
) -> bool:
    """True when reads would pay for a long tail (or have no usable checkpoint)."""
    if checkpoint is None:
        return True
    tail = tail_files(log, path, checkpoint, storage_options)
    if tail is None or len(tail) > REBUILD_FILES:
        return True
    if not tail:
        return False
    options = dict(storage_options) if storage_options else None
    tail_rows = pl.scan_parquet(tail, storage_options=options).select(pl.len()).collect().item()
    checkpoint_rows = pl.scan_delta(checkpoint.table).select(pl.len()).collect().item()
    return tail_rows >= REBUILD_SHARE * max(checkpoint_rows, 1)


def write_checkpoint(
    path: str, rows: pl.DataFrame, log_version: int, storage_options: Mapping[str, str] | None
) -> None:
    """Replace the checkpoint at `path` with `rows`, the latest rows as of `log_version`."""
    options = dict(storage_options) if storage_options else None
    write_deltalake(
        path,
        rows,
        mode="overwrite",
        schema_mode="overwrite",
        storage_options=options,
        commit_properties=CommitProperties(
            custom_metadata={LOG_VERSION: str(log_version)}, max_commit_retries=0
        ),
    )
    DeltaTable(path, storage_options=options).vacuum(
        retention_hours=KEEP_OLD_FILES_HOURS, dry_run=False, enforce_retention_duration=False
    )
