"""Commands that change a store: accept, delete, compact, copy."""

from typing import Annotated, Any

import typer

from metaxy_core import _migrations as migrations
from metaxy_core._errors import ConfigError, HashSettingsMismatchError, StoreError
from metaxy_core.cli._commands._options import Json, Store, Where, session

Reason = Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the audit record).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Count what would change; change nothing.")]
Actor = Annotated[
    str | None, typer.Option("--actor", help="Who does it (default: the system user).")
]
_SHOWN_IDS = 20


def accept(
    ctx: typer.Context,
    feature: Annotated[str, typer.Argument(help="The feature key.")],
    reason: Reason,
    fields: Annotated[
        list[str] | None,
        typer.Option(
            "--field", help="Accept only this field (repeat); samples stale in others are skipped."
        ),
    ] = None,
    where: Where = None,
    dry_run: DryRun = False,
    actor: Actor = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Accept the current definition for stale samples without recomputing them (audited)."""
    s = session(ctx)
    key = s.feature(feature)
    opened = s.store(store, read_only=dry_run)
    with s.busy(f"accepting {key}"):
        report = migrations.accept(
            opened,
            key,
            reason=reason,
            fields=fields,
            filters=where or (),
            dry_run=dry_run,
            actor=actor,
        )
    if as_json:
        shown = report.samples.head(_SHOWN_IDS).to_dicts()
        s.json(report.to_dict() | {"samples": _plain(shown)})
        return
    s.out.print(report.describe())
    if report.audit_id:
        s.out.print(f"Audit record {report.audit_id}: {report.rows} row(s) re-stamped.")


def delete(
    ctx: typer.Context,
    feature: Annotated[str, typer.Argument(help="The feature key.")],
    where: Where = None,
    hard: Annotated[
        bool, typer.Option("--hard", help="Remove the rows, history included (default: soft).")
    ] = False,
    cascade: Annotated[
        bool,
        typer.Option("--cascade", help="Also delete what downstream features derived from them."),
    ] = False,
    dry_run: DryRun = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm a hard delete without --where (every sample).")
    ] = False,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why (kept in the audit record).")
    ] = "",
    actor: Actor = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Delete samples chosen by --where: soft by default, --hard to remove their rows."""
    s = session(ctx)
    key = s.feature(feature)
    if hard and not where and not yes and not dry_run:
        raise ConfigError(
            f"A hard delete without --where removes every row of {key} (history included); "
            "add --yes to confirm, or --dry-run to count."
        )
    opened = s.store(store, read_only=dry_run)
    with s.busy(f"deleting from {key}"):
        report = migrations.delete(
            opened,
            key,
            filters=where or (),
            hard=hard,
            cascade=cascade,
            dry_run=dry_run,
            reason=reason,
            actor=actor,
        )
    if as_json:
        s.json(report.to_dict())
        return
    s.out.print(report.describe() or f"{key}: no sample matched.")
    if report.audit_id:
        s.out.print(f"Audit record {report.audit_id}.")


def compact(
    ctx: typer.Context,
    features: Annotated[
        list[str] | None, typer.Argument(help="Feature keys (default: all).")
    ] = None,
    drop_history: Annotated[
        bool,
        typer.Option("--drop-history", help="Drop superseded rows instead of archiving them."),
    ] = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Rewrite feature tables to their latest row per sample (stores that keep a log: Delta)."""
    s = session(ctx)
    keys = [s.feature(f) for f in features] if features else None
    opened = s.store(store, read_only=False)
    compact_fn = getattr(opened, "compact", None)
    if compact_fn is None:
        note = f"{type(opened).__name__} keeps its current rows apart from its log: "
        note += "nothing to compact."
        if as_json:
            s.json({"compacted": {}, "note": note})
        else:
            s.out.print(note)
        return
    with s.busy("compacting"):
        removed: dict[str, int] = compact_fn(keys, keep_history=not drop_history)
    if as_json:
        s.json({"compacted": removed})
        return
    for path, n in removed.items():
        s.out.print(f"{path}: {n} superseded row(s) {'dropped' if drop_history else 'archived'}")
    if not removed:
        s.out.print("No feature has rows yet.")


def copy(
    ctx: typer.Context,
    source: Annotated[str, typer.Option("--from", help="The source store (name or URI).")],
    target: Annotated[str, typer.Option("--to", help="The target store (name or URI).")],
    features: Annotated[
        list[str] | None, typer.Option("--feature", help="Copy only this feature (repeat).")
    ] = None,
    where: Where = None,
    as_json: Json = False,
) -> None:
    """Copy features' history between stores (e.g. production Delta into a local DuckDB)."""
    s = session(ctx)
    keys = [s.feature(f) for f in features] if features else None
    config = s.config()
    if config.store_config(source).location == config.store_config(target).location:
        raise ConfigError(f"--from and --to name the same store ({source!r}).")
    src = s.store(source, read_only=True)
    try:
        dst = config.open_store(
            target, graph=s.graph(), read_only=False, hash_settings=src.hash_settings
        )
    except HashSettingsMismatchError as exc:
        raise StoreError(f"Cannot copy from {source!r} to {target!r}: {exc}") from exc
    try:
        with s.busy("copying"):
            copied = src.copy_to(dst, features=keys, filters=where or ())
    finally:
        dst.close()
    if as_json:
        s.json({"copied": copied})
        return
    for path, n in copied.items():
        s.out.print(f"{path}: {n} row(s) copied")
    if not copied:
        s.out.print("Nothing to copy: the source holds none of these features.")


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: v if isinstance(v, str | int | float | bool) else str(v) for k, v in r.items()}
        for r in rows
    ]
