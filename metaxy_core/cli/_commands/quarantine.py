"""`metaxy quarantine list|release`: samples held back after failing too many attempts."""

import json
from typing import Annotated, Any

import polars as pl
import typer

from metaxy_core._errors import ConfigError
from metaxy_core.cli._commands._options import Json, Store, session

app = typer.Typer(
    name="quarantine",
    help="List or release samples quarantined after failing max_attempts times.",
    no_args_is_help=True,
)


@app.command("list")
def list_quarantined(
    ctx: typer.Context,
    features: Annotated[
        list[str] | None, typer.Argument(help="Feature keys (default: all).")
    ] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """List quarantined samples with their attempts and last error."""
    s = session(ctx)
    keys = [s.feature(f) for f in features] if features else list(s.graph().keys)
    opened = s.store(store)
    found = {key.path: _records(opened.quarantined(key)) for key in keys}
    found = {path: rows for path, rows in found.items() if rows}
    if as_json:
        s.json({"quarantined": found})
        return
    for path, rows in found.items():
        s.out.print(f"{path}: {len(rows)} quarantined sample(s)")
        for row in rows:
            s.out.print(f"  {row['sample']}  attempts={row['attempts']}  {row['last_error']}")
    if not found:
        s.out.print("No sample is quarantined.")


@app.command("release")
def release(
    ctx: typer.Context,
    feature: Annotated[str, typer.Argument(help="The feature key.")],
    ids: Annotated[
        list[str] | None,
        typer.Option(
            "--id",
            help="A sample to release: its id value, or a JSON object of its id columns (repeat).",
        ),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Release every quarantined sample of the feature.")
    ] = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Release quarantined samples: the sensor batches them again, counting from zero."""
    s = session(ctx)
    key = s.feature(feature)
    if bool(ids) == every:
        raise ConfigError("Name the samples to release with --id (repeat), or pass --all.")
    columns = list(s.graph().spec(key).parent_key)
    chosen = None if every else _ids(ids or [], columns)
    opened = s.store(store, read_only=False)
    released = opened.release_quarantine(key, chosen)
    if as_json:
        s.json({"feature": key.path, "released": released})
        return
    s.out.print(f"{key}: released {released} sample(s) from quarantine.")


def _ids(values: list[str], columns: list[str]) -> pl.DataFrame:
    """Sample ids from `--id` values: a bare value for one id column, else JSON objects."""
    rows: list[dict[str, Any]] = []
    for value in values:
        if value.lstrip().startswith("{"):
            row = json.loads(value)
            if not isinstance(row, dict) or set(row) != set(columns):  # pyright: ignore[reportUnknownArgumentType]
                raise ConfigError(f"--id {value}: give exactly the id columns {columns}.")
            rows.append({c: row[c] for c in columns})
        elif len(columns) == 1:
            rows.append({columns[0]: value})
        else:
            raise ConfigError(
                f"--id {value}: this feature has id columns {columns}; give a JSON object, "
                "e.g. --id '{\"" + columns[0] + "\": ...}'."
            )
    return pl.DataFrame(rows, schema=dict.fromkeys(columns, pl.String()))


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Quarantine records as plain rows: the sample's ids, attempts, last error, when."""
    ids = [c for c in frame.columns if c not in _RECORD_COLUMNS]
    return [
        {
            "sample": {c: str(row[c]) for c in ids},
            "attempts": row["attempts"],
            "last_error": row["reason"],
            "attempted_at": str(row["attempted_at"]),
        }
        for row in frame.iter_rows(named=True)
    ]


_RECORD_COLUMNS = (
    "metaxy_provenance",
    "attempts",
    "status",
    "reason",
    "batch_key",
    "attempted_at",
)
