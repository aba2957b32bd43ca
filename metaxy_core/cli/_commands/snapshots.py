"""Graph snapshots and the audit trail: push, history, diff."""

import json
from typing import Annotated, Any

import polars as pl
import typer
from rich import box
from rich.table import Table

from metaxy_core._errors import ConfigError
from metaxy_core._evolution import GraphChanges
from metaxy_core._graph import FeatureGraph
from metaxy_core.cli._commands._options import Json, Store, session
from metaxy_core.stores import MetadataStore


def push(
    ctx: typer.Context,
    tags: Annotated[
        list[str] | None,
        typer.Option("--tag", "-t", help="key=value to keep with the snapshot (e.g. git=abc123)."),
    ] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Record the current graph's definitions in the store (a snapshot `diff` can compare)."""
    s = session(ctx)
    parsed = dict(_pair(t) for t in tags or [])
    opened = s.store(store, read_only=False)
    version = opened.push_graph_snapshot(tags=parsed)
    if as_json:
        s.json({"project_version": version, "features": len(s.graph()), "tags": parsed})
    else:
        s.out.print(f"Pushed graph snapshot {version} ({len(s.graph())} features).")


def history(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Show the last N of each.")] = 20,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Graph snapshots and audited operations (accepts, deletes), newest last."""
    s = session(ctx)
    opened = s.store(store)
    snapshots = opened.graph_snapshots().tail(limit)
    audits = opened.audit_log().tail(limit)
    if as_json:
        s.json(
            {
                "snapshots": [_snapshot(r) for r in snapshots.iter_rows(named=True)],
                "audit": [_audit(r) for r in audits.iter_rows(named=True)],
            }
        )
        return
    table = Table(
        title="graph snapshots",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        title_justify="left",
    )
    for title in ("pushed at", "project version", "features", "tags"):
        table.add_column(title)
    for r in snapshots.iter_rows(named=True):
        snap = _snapshot(r)
        tags = ", ".join(f"{k}={v}" for k, v in snap["tags"].items())
        table.add_row(snap["pushed_at"], snap["project_version"], str(snap["features"]), tags)
    s.out.print(table if snapshots.height else "No graph snapshots yet.")
    s.out.print()
    audit = Table(
        title="audit", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title_justify="left"
    )
    for title in ("at", "operation", "feature", "rows", "by", "reason", "graph", "id"):
        audit.add_column(title)
    for r in audits.iter_rows(named=True):
        a = _audit(r)
        audit.add_row(
            a["at"],
            a["kind"],
            a["feature"],
            str(a["rows"]),
            a["actor"],
            a["reason"],
            a["project_version"],
            a["audit_id"],
        )
    s.out.print(audit if audits.height else "No audited operations yet.")


def diff(
    ctx: typer.Context,
    old: Annotated[
        str, typer.Argument(help="A snapshot (project version or a prefix), 'latest' or 'current'.")
    ],
    new: Annotated[str, typer.Argument(help="The same kinds of reference.")] = "current",
    check: Annotated[
        bool, typer.Option("--check", help="Exit with 1 if anything changed.")
    ] = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Features and fields that changed between two graphs, including through an upstream."""
    s = session(ctx)
    opened: list[MetadataStore] = []

    def snapshots() -> pl.DataFrame:
        if not opened:
            opened.append(s.store(store))
        return opened[0].graph_snapshots()

    before, after = _graph(s.graph(), old, snapshots), _graph(s.graph(), new, snapshots)
    changes = GraphChanges.between(before, after)
    if as_json:
        s.json(
            {
                "from": before.project_version,
                "to": after.project_version,
                "changes": [
                    {"feature": c.feature.path, "kind": c.kind.value, "detail": c.detail}
                    for c in changes.changes
                ],
            }
        )
    else:
        s.out.print(f"{before.project_version} -> {after.project_version}")
        s.out.print(changes.describe())
    if check and changes:
        raise typer.Exit(1)


def _graph(current: FeatureGraph, ref: str, snapshots: Any) -> FeatureGraph:
    """The graph a reference names: 'current', 'latest' or a (prefix of a) project version."""
    if ref == "current":
        return current
    rows: pl.DataFrame = snapshots()
    if rows.is_empty():
        raise ConfigError(
            f"No graph snapshots in the store to compare with {ref!r}: run metaxy push."
        )
    if ref == "latest":
        return FeatureGraph.from_snapshot(rows["snapshot"][-1])
    matches = rows.filter(pl.col("project_version").str.starts_with(ref))
    versions = matches["project_version"].unique().to_list()
    if not versions:
        known = ", ".join(rows["project_version"].unique(maintain_order=True).to_list()[-5:])
        raise ConfigError(f"No graph snapshot {ref!r} in the store; recent ones: {known}.")
    if len(versions) > 1:
        raise ConfigError(f"Snapshot prefix {ref!r} is ambiguous: {', '.join(versions)}.")
    return FeatureGraph.from_snapshot(matches["snapshot"][-1])


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"malformed tag {text!r}: use key=value", param_hint="--tag")
    return key, value


def _snapshot(row: dict[str, Any]) -> dict[str, Any]:
    features = json.loads(row["snapshot"]).get("features", [])
    return {
        "pushed_at": row["pushed_at"].strftime("%Y-%m-%d %H:%M:%S"),
        "project_version": row["project_version"],
        "features": len(features),
        "tags": json.loads(row["tags"] or "{}"),
    }


def _audit(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "audit_id": row["audit_id"],
        "at": row["at"].strftime("%Y-%m-%d %H:%M:%S"),
        "kind": row["kind"],
        "feature": row["feature"],
        "rows": row["rows"],
        "actor": row["actor"],
        "reason": row["reason"],
        "project_version": row["project_version"],
        "details": json.loads(row["details"] or "{}"),
    }
