"""The attempts table: per sample, failed attempts, quarantine and deliberate skips.

A record holds one sample of one feature (keyed like the feature's increment: its parent
key), the provenance it was attempted with, how many attempts failed in a row, the status
and the last error or skip reason. The latest record per sample wins. A record applies to
its provenance only: once a sample's inputs or code version change, its increment row
carries another provenance and the old record no longer holds it back.

Statuses: `failed` (the compute raised or left the sample out), `quarantined` (too many
failures; the scheduler decides), `skipped` (the compute said why it left the sample out),
`released` (a quarantine lifted by hand: the count starts again), `succeeded` (written
after failed attempts: the failures no longer stand).
"""

import json
from abc import abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._errors import WriteValidationError
from metaxy_core._graph import FeatureGraph
from metaxy_core._guard import guard_public_methods, store_error
from metaxy_core.stores import _writes as W
from metaxy_core.stores._storage import Storage
from metaxy_core.stores._system_tables import UTC_US, typed_ids

ATTEMPTS_TABLE = "metaxy_system__attempts"
STATUSES = ("failed", "quarantined", "skipped", "released", "succeeded")
# Records that keep counting: a new failure of the same provenance adds one to them.
_COUNTING = ("failed", "quarantined")
RECORD_SCHEMA: dict[str, pl.DataType] = {
    "feature": pl.String(),
    "sample": pl.String(),  # the sample's key values as a JSON object
    C.PROVENANCE: pl.String(),
    "attempts": pl.Int64(),
    "status": pl.String(),
    "reason": pl.String(),
    "batch_key": pl.String(),
    "attempted_at": UTC_US,
}
_REASON_CHARS = 2_000  # a traceback-sized message is cut, the start says what failed


class AttemptLog(Storage):
    """Store methods of the attempts table, on the storage primitives of every backend."""

    @property
    @abstractmethod
    def graph(self) -> FeatureGraph:
        """The feature graph."""

    def record_attempts(
        self,
        feature: Any,
        samples: Any,
        *,
        status: str,
        reason: str | None = None,
        batch_key: str | None = None,
    ) -> int:
        """Record an attempt outcome for samples; returns how many records were appended.

        Args:
            feature: key, spec or class.
            samples: the feature's increment key columns (its id columns; the parent's for
                an expansion) plus `metaxy_provenance`, as in its increment; a `reason`
                column, if any, gives each sample its own reason.
            status: `failed` counts one more attempt when the sample's last record is a
                failure or quarantine of the same provenance (else starts at 1);
                `quarantined` keeps the count; `skipped`, `released` and `succeeded`
                reset it to 0.
            reason: the error or skip reason (None keeps the last one).
            batch_key: the batch the attempt ran in.

        Raises:
            WriteValidationError: an unknown status, or samples without the key or
                provenance columns.
        """
        key = self.graph.spec(feature).key
        frame = self._attempt_samples(key, samples, status)
        if frame.is_empty():
            return 0
        previous = self._latest_records(key)
        rows = _next_records(key.path, frame, previous, status, reason, batch_key)
        self._append(ATTEMPTS_TABLE, rows)
        return rows.height

    def sample_attempts(self, feature: Any, *, status: str | None = None) -> pl.DataFrame:
        """The latest attempt record of each sample of `feature`, oldest first (then by id).

        Columns: the feature's increment key columns, `metaxy_provenance`, `attempts`,
        `status`, `reason`, `batch_key` and `attempted_at`.
        """
        spec = self.graph.spec(feature)
        records = self._latest_records(spec.key)
        if status is not None:
            records = records.filter(pl.col("status") == status)
        ids = typed_ids(
            self.graph, spec.key, spec.parent_key, [json.loads(s) for s in records["sample"]]
        )
        return pl.concat([ids, records.drop("feature", "sample")], how="horizontal")

    def quarantined(self, feature: Any) -> pl.DataFrame:
        """Samples of `feature` held back after too many failed attempts, with their last error.

        A quarantine holds for the provenance it was recorded with: a sample whose inputs
        or code version changed since is computed again (see `sample_attempts`).
        """
        return self.sample_attempts(feature, status="quarantined")

    def release_quarantine(self, feature: Any, ids: Any = None) -> int:
        """Lift the quarantine of samples (all of the feature's when `ids` is None).

        Released samples are batched again and their attempts are counted from zero.

        Args:
            feature: key, spec or class.
            ids: a frame with the feature's increment key columns naming the samples, or
                a list of ids where that key is one column.

        Returns:
            How many samples were released.
        """
        spec = self.graph.spec(feature)
        held = self.quarantined(spec.key)
        if ids is not None:
            key = list(spec.parent_key)
            if isinstance(ids, list | tuple | pl.Series) and len(key) == 1:
                bare: list[Any] = list(cast(Sequence[Any], ids))
                ids = pl.DataFrame({key[0]: bare})  # bare ids of a one-column key
            chosen = W.to_polars(ids, what=f"release_quarantine of {spec.key}")
            missing = [c for c in key if c not in chosen.columns]
            if missing:
                raise WriteValidationError(
                    f"release_quarantine of {spec.key}: ids lack column(s) {missing}; "
                    f"got {chosen.columns}."
                )
            chosen = chosen.select(key).cast({c: held.schema[c] for c in key})
            held = held.join(chosen, on=key, how="semi")
        return self.record_attempts(
            spec.key, held, status="released", reason="released from quarantine"
        )

    # -- internals -----------------------------------------------------------------------

    def _attempt_samples(self, key: Any, samples: Any, status: str) -> pl.DataFrame:
        """The key columns and provenance of `samples`, typed like the feature's columns."""
        what = f"record_attempts of {key}"
        if status not in STATUSES:
            raise WriteValidationError(f"{what}: unknown status {status!r}; use one of {STATUSES}.")
        frame = W.to_polars(samples, what=what)
        spec = self.graph.spec(key)
        wanted = [*spec.parent_key, C.PROVENANCE]
        missing = [c for c in wanted if c not in frame.columns]
        if "reason" in frame.columns:
            wanted.append("reason")
        if missing:
            raise WriteValidationError(f"{what}: samples lack column(s) {missing}.")
        declared = self.graph.definition(key).columns
        typed = [pl.col(c).cast(declared[c]) for c in spec.parent_key if c in declared]
        return frame.select(wanted).with_columns(typed).unique(subset=list(spec.parent_key))

    def _latest_records(self, key: Any) -> pl.DataFrame:
        """The latest record per sample of one feature (every column of the table)."""
        if not self._exists(ATTEMPTS_TABLE):
            return pl.DataFrame(schema=RECORD_SCHEMA)
        rows = self._scan(ATTEMPTS_TABLE).filter(nw.col("feature") == key.path)
        latest = self.engine.latest(rows, ["feature", "sample"], C.WRITE_ID)
        frame = latest.sort(C.WRITE_ID, "sample").collect(backend="polars").to_native()
        return frame.select(list(RECORD_SCHEMA)).cast(RECORD_SCHEMA)


def sample_text(frame: pl.DataFrame, columns: Sequence[str]) -> list[str]:
    """Each row's key values as a JSON object: the same sample gives the same text."""
    return [json.dumps(row, default=str) for row in frame.select(columns).iter_rows(named=True)]


def _next_records(
    feature: str,
    samples: pl.DataFrame,
    previous: pl.DataFrame,
    status: str,
    reason: str | None,
    batch_key: str | None,
) -> pl.DataFrame:
    """The records to append: attempts counted on from the previous record where it applies."""
    key = [c for c in samples.columns if c not in (C.PROVENANCE, "reason")]
    now: datetime = W.utc_now()
    own = samples["reason"] if "reason" in samples.columns else None
    frame = pl.DataFrame(
        {
            "sample": sample_text(samples, key),
            C.PROVENANCE: samples[C.PROVENANCE],
            "own_reason": own,
        },
        schema={"sample": pl.String(), C.PROVENANCE: pl.String(), "own_reason": pl.String()},
    )
    last = previous.select(
        "sample",
        pl.col(C.PROVENANCE).alias("last_provenance"),
        pl.col("attempts").alias("last_attempts"),
        pl.col("status").alias("last_status"),
        pl.col("reason").alias("last_reason"),
    )
    frame = frame.join(last, on="sample", how="left")
    same = (pl.col("last_provenance") == pl.col(C.PROVENANCE)).fill_null(False)
    counting = same & pl.col("last_status").is_in(_COUNTING).fill_null(False)
    if status == "failed":
        attempts = pl.when(counting).then(pl.col("last_attempts") + 1).otherwise(1)
    elif status == "quarantined":
        attempts = pl.when(counting).then(pl.col("last_attempts")).otherwise(0)
    else:
        attempts = pl.lit(0)
    text = None if reason is None else reason[:_REASON_CHARS]
    return frame.select(
        pl.lit(feature, pl.String()).alias("feature"),
        "sample",
        C.PROVENANCE,
        attempts.cast(pl.Int64()).alias("attempts"),
        pl.lit(status, pl.String()).alias("status"),
        pl.coalesce(pl.col("own_reason").str.slice(0, _REASON_CHARS), pl.lit(text, pl.String()))
        .fill_null(pl.col("last_reason"))
        .alias("reason"),
        pl.lit(batch_key, pl.String()).alias("batch_key"),
        pl.lit(now, UTC_US).alias("attempted_at"),
        pl.lit(W.new_write_id(), pl.String()).alias(C.WRITE_ID),
    )


guard_public_methods(AttemptLog, store_error)
