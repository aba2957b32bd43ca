"""The `metaxy` command line, and the configuration and feature discovery it stands on.

`load_config()` reads `[tool.metaxy]` (or metaxy.toml, METAXY_* variables) and gives the
graph and the named stores, so a Dagster code location can use the same discovered graph:
`build_definitions(load_config().load_graph(), ...)`.
"""

from collections.abc import Sequence

from metaxy_core._errors import ConfigError as ConfigError
from metaxy_core.cli._config import MetaxyConfig as MetaxyConfig
from metaxy_core.cli._config import StoreConfig as StoreConfig
from metaxy_core.cli._config import load_config as load_config
from metaxy_core.cli._discovery import ENTRY_POINT_GROUP as ENTRY_POINT_GROUP
from metaxy_core.cli._discovery import graph_from_entry_points as graph_from_entry_points
from metaxy_core.cli._discovery import graph_from_target as graph_from_target

__all__ = [
    "ENTRY_POINT_GROUP",
    "ConfigError",
    "MetaxyConfig",
    "StoreConfig",
    "graph_from_entry_points",
    "graph_from_target",
    "load_config",
    "main",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `metaxy` command line; return its exit code (0 ok, 1 work found, 2 bad input).

    Args:
        argv: the arguments (default: the process's).

    Returns:
        The exit code.

    Example:
        >>> main(["graph", "--format", "mermaid"])  # doctest: +SKIP
        0
    """
    from metaxy_core.cli._app import run  # the CLI library loads only for the command line

    return run(argv)
