"""The audit table: who changed a store's rows outside a run (accept, delete), when and why.

Like the other system tables, these functions build and decode rows; the store appends
and scans them with its primitives, so every backend keeps them the same way.
"""

import getpass
import json
import secrets
from collections.abc import Mapping
from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core.stores import _writes as W

AUDIT_TABLE = "metaxy_system__audit"

UTC_US = pl.Datetime("us", "UTC")
AUDIT_SCHEMA: dict[str, pl.DataType] = {
    "audit_id": pl.String(),
    "kind": pl.String(),
    "feature": pl.String(),
    "reason": pl.String(),
    "actor": pl.String(),
    "rows": pl.Int64(),
    "project_version": pl.String(),
    "details": pl.String(),
    "at": UTC_US,
}


def new_audit_id(kind: str) -> str:
    """A readable, unique id (`accept-<hex>`); also stamped on the rows the operation writes."""
    return f"{kind.replace(' ', '-')}-{secrets.token_hex(6)}"


def current_actor() -> str:
    """The operating system user, as a default `actor`."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name in the environment or the password database
        return "unknown"


def audit_row(
    audit_id: str,
    kind: str,
    *,
    feature: str,
    reason: str,
    actor: str,
    rows: int,
    project_version: str,
    details: Mapping[str, Any],
) -> pl.DataFrame:
    """One audit record (`details` kept as JSON text)."""
    return pl.DataFrame(
        {
            "audit_id": [audit_id],
            "kind": [kind],
            "feature": [feature],
            "reason": [reason],
            "actor": [actor],
            "rows": [rows],
            "project_version": [project_version],
            "details": [json.dumps(dict(details), sort_keys=True, default=str)],
            "at": [W.utc_now()],
            C.WRITE_ID: [W.new_write_id()],
        },
        schema_overrides={"at": UTC_US, "rows": pl.Int64},
    )


def audit_records(rows: nw.LazyFrame[Any] | None) -> pl.DataFrame:
    """Every audit record, oldest first (`rows` is None if none was recorded)."""
    if rows is None:
        return pl.DataFrame(schema=AUDIT_SCHEMA)
    return rows.sort(C.WRITE_ID).collect(backend="polars").to_native().drop(C.WRITE_ID)
