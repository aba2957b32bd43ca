"""The `metaxy` application: global options, the commands, exit codes and one-line errors.

Exit codes: 0 done, 1 a `--check` found work, 2 bad input, a bad configuration or an
unreachable store (one line on stderr naming the problem; nothing was changed), 3 a bug.
"""

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Annotated

import typer

from metaxy_core._errors import MetaxyError
from metaxy_core.cli._commands import inspect, maintenance, quarantine, snapshots
from metaxy_core.cli._session import Session

EXIT_BAD_INPUT = 2
EXIT_BUG = 3

app = typer.Typer(
    name="metaxy",
    help="Inspect and maintain sample-level feature metadata.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="The configuration file (default: the nearest metaxy.toml or pyproject.toml).",
        ),
    ] = None,
    graph: Annotated[
        str | None,
        typer.Option(
            "--graph",
            help="The graph: module:attribute, or a module (overrides the configuration).",
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="The default store: a configured name or a URI."),
    ] = None,
) -> None:
    session = Session(config_path=config, graph_target=graph, store_name=store)
    ctx.obj = session
    ctx.call_on_close(session.close)


for command in (inspect.graph, inspect.status, inspect.plan, inspect.why):
    app.command()(command)
for command in (snapshots.push, snapshots.history, snapshots.diff):
    app.command()(command)
for command in (maintenance.accept, maintenance.delete, maintenance.compact, maintenance.copy):
    app.command()(command)
app.add_typer(quarantine.app)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the application; return the exit code."""
    try:
        return _run(argv)
    except BrokenPipeError:  # `metaxy status | head`: the reader left early; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(argv: Sequence[str] | None) -> int:
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = command.main(args=args, prog_name="metaxy", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return _fail("aborted")
    except typer.TyperException as exc:  # usage errors: unknown option, missing argument...
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `metaxy`: the help, no error
            print(exc.format_message() if hasattr(exc, "format_message") else str(exc))
            return 0
        context = getattr(exc, "ctx", None)
        hint = (
            f" (see metaxy {context.info_name} --help)"
            if context is not None and context.parent
            else ""
        )
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return _fail(f"{message}{hint}")
    except MetaxyError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{type(exc).__name__}: {exc}")
    except Exception:
        traceback.print_exc()
        print("metaxy: internal error (a bug): please report the traceback above.", file=sys.stderr)
        return EXIT_BUG
    return result if isinstance(result, int) else 0


def _fail(message: str) -> int:
    """One line on stderr naming the problem."""
    print(f"metaxy: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_BAD_INPUT
