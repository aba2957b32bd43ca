"""Options several commands share."""

from typing import Annotated

import typer

from metaxy_core.cli._session import Session

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
Store = Annotated[
    str | None,
    typer.Option(
        "--store", "-s", help="A configured store name or a URI (default: the default store)."
    ),
]
Where = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        "-w",
        help="A condition in the filter language on the feature's columns (repeat: all hold).",
    ),
]


def session(ctx: typer.Context) -> Session:
    """The command's session (opened by the root callback)."""
    found = ctx.find_object(Session)
    if found is None:  # a command invoked without the root callback (never from the CLI)
        found = ctx.ensure_object(Session)
    return found
