"""How DeltaStore commits: delta-rs retry settings, our retry on conflict, the vouch mark.

delta-rs retries a commit that lost its version to a concurrent writer at the next version
(`COMMIT_RETRIES`, None: its default). That is safe for appends, which it checks for
conflicts, but blind for the commit that creates a table: the late creator's schema would
replace the first one's, and a column of the first writer would vanish. Creating commits
therefore fail on a lost race (`CREATE_COMMIT_RETRIES = 0`) and are redone by
`retry_on_conflict` as appends that merge the schema. Tests change these constants to
show what they protect.

A commit that leaves one row per sample (the creating write, a compaction) says so in its
metadata (`commit_properties(vouch=...)`), and reads then skip the latest-row window.
"""

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import polars as pl
from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError, SchemaMismatchError

from metaxy_core._errors import StoreError

T = TypeVar("T")

# Attempts of a write that conflicts with concurrent writers (tests set 1: no retry).
MAX_ATTEMPTS = 12
COMMIT_RETRIES: int | None = None
CREATE_COMMIT_RETRIES: int | None = 0
# Commit metadata key: the table held this many rows after the commit, one per sample.
ONE_ROW_PER_SAMPLE = "metaxy.one_row_per_sample"
_FIRST_BACKOFF_S = 0.02
_MAX_BACKOFF_S = 1.0
# Messages of delta-rs errors that mean "another writer committed first: try again".
_CONFLICT_MARKERS = ("conflict", "concurrent", "already exists", "version mismatch")


def commit_properties(*, creates: bool, vouch: int | None) -> CommitProperties:
    """How delta-rs may retry the commit, and (`vouch`) its one-row-per-sample mark.

    `vouch` says: after this commit the table holds this many rows, one per sample.
    """
    return CommitProperties(
        custom_metadata={ONE_ROW_PER_SAMPLE: str(vouch)} if vouch is not None else None,
        max_commit_retries=CREATE_COMMIT_RETRIES if creates else COMMIT_RETRIES,
    )


def latest_commit(delta: DeltaTable) -> dict[str, Any] | None:
    """The table's newest commit info, None if history does not show the current version.

    history(1) may return more than one entry on a refreshed table: the newest is picked. It
    is empty for a table whose local path holds '#' or '?' (deltalake 1.x).
    """
    commits = delta.history(1)
    if not commits:
        return None
    last = max(commits, key=lambda commit: commit.get("version", -1))
    return last if last.get("version") == delta.version() else None


def holds_one_row_per_sample(delta: DeltaTable) -> bool:
    """True if the latest commit vouched for one row per sample and the row count agrees.

    A commit that vouched wrongly after losing a race (an append that found the table
    created meanwhile, a compaction next to a concurrent append) is caught by the count.
    """
    return vouches(latest_commit(delta), log_rows(delta))


def vouches(last: dict[str, Any] | None, rows: int | None) -> bool:
    """True if commit info `last` vouched for one row per sample, `rows` of them."""
    vouched = last.get(ONE_ROW_PER_SAMPLE) if last is not None else None
    return vouched is not None and rows is not None and str(rows) == vouched


def log_rows(delta: DeltaTable) -> int | None:
    """The rows of the loaded version, from the add actions' statistics (None: not kept)."""
    counts = pl.Series(delta.get_add_actions(flatten=True).column("num_records"))
    return None if counts.null_count() else int(counts.sum())


def _is_conflict(exc: Exception) -> bool:
    if isinstance(exc, CommitFailedError):
        return True
    message = str(exc).lower()
    return any(marker in message for marker in _CONFLICT_MARKERS)


def retry_on_conflict(action: Callable[[], T], *, what: str) -> T:
    """Run `action`, retrying with jittered exponential backoff while commits conflict."""
    delay = _FIRST_BACKOFF_S
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return action()
        except (CommitFailedError, DeltaError) as exc:
            if isinstance(exc, SchemaMismatchError) or not _is_conflict(exc):
                raise
            if attempt == MAX_ATTEMPTS:
                raise StoreError(
                    f"Could not {what}: {MAX_ATTEMPTS} attempts conflicted with concurrent "
                    f"writers (last error: {exc}). The failed attempts wrote nothing."
                ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _MAX_BACKOFF_S)
    raise AssertionError("unreachable")
