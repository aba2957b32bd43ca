"""Small files of Delta system tables, merged once they pile up.

The system tables (watermarks, batch manifests, attempts, snapshots, audit) take one small
append per sensor tick or run, and a Delta table holds one data file per append: every read
opens them all. On this project's 2-core machine a read of a table of one-row files took
18 ms at 100 files, 130 ms at 500 and 240 ms at 1,500 (a day of ticks every minute), and a
sensor reads several such tables per tick. After an append leaves more than
`MAX_SMALL_FILES` files, they are rewritten as one: every row stays (the tables are logs
whose history is read), only the files change.

The rewrite is an overwrite through the snapshot that was read: it replaces only the files
it saw, so rows appended meanwhile stay, and two merges racing conflict (the loser is
skipped; a later append merges again). delta-rs's own `optimize.compact()` is not used:
two of them racing both commit, and every row of the merged files is then there twice
(deltalake 1.6.6, reproduced with two threads).

Feature tables are never touched here: their watermarks read the files added since a
version, and their reads go through the current-rows checkpoint (`_delta_current`).
"""

import logging

import polars as pl
from deltalake import DeltaTable, write_deltalake

from metaxy_core.stores._delta_commits import commit_properties

_log = logging.getLogger("metaxy")

SYSTEM_PREFIX = "metaxy_system__"
# Merge a system table's files once it has more than this many (None: never; tests).
MAX_SMALL_FILES: int | None = 100
# The merge overwrites through its snapshot. False: delta-rs's optimize.compact() instead,
# which doubles rows when two merges race (tests show it).
MERGE_THROUGH_SNAPSHOT = True


def is_system_table(table: str) -> bool:
    return table.startswith(SYSTEM_PREFIX)


def merge_if_many(table: DeltaTable, path: str) -> bool:
    """Merge `table`'s data files if there are more than `MAX_SMALL_FILES`; True if merged.

    Best effort: a failure is logged, never raised (the append it follows has landed).
    """
    if MAX_SMALL_FILES is None or len(table.file_uris()) <= MAX_SMALL_FILES:
        return False
    try:
        if not MERGE_THROUGH_SNAPSHOT:
            table.optimize.compact()
            return True
        rows = pl.scan_delta(table).collect()
        write_deltalake(
            table,
            rows,
            mode="overwrite",
            commit_properties=commit_properties(creates=False, vouch=None),
        )
    except Exception as exc:  # a lost race, an I/O error: the next append tries again
        _log.info("Small files of %s not merged this time: %s", path, exc)
        return False
    return True
