"""What every command shares: the configuration, graph and stores it opened, and its output."""

import json
import os
import sys
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from metaxy_core._errors import ConfigError
from metaxy_core._graph import FeatureGraph
from metaxy_core._keys import FeatureKey
from metaxy_core.cli._config import MetaxyConfig, load_config
from metaxy_core.stores import MetadataStore

T = TypeVar("T")


def _console(stream: Any) -> Console:
    """A console on `stream`: the terminal's width, or 120 columns when piped."""
    terminal = stream.isatty()
    width = None if terminal or os.environ.get("COLUMNS") else 120
    return Console(file=stream, width=width, highlight=False, markup=False, emoji=False)


@dataclass
class Session:
    """Opened lazily by the commands; closed when the command ends."""

    config_path: str | None = None
    graph_target: str | None = None
    store_name: str | None = None
    out: Console = field(default_factory=lambda: _console(sys.stdout))
    err: Console = field(default_factory=lambda: _console(sys.stderr))
    _config: MetaxyConfig | None = None
    _graph: FeatureGraph | None = None
    _opened: list[MetadataStore] = field(default_factory=list[MetadataStore])

    def config(self) -> MetaxyConfig:
        if self._config is None:
            self._config = load_config(
                config=self.config_path, graph=self.graph_target, store=self.store_name
            )
            if (
                self._config.source is None
                and self._config.graph is None
                and not (self.graph_target or os.environ.get("METAXY_GRAPH"))
            ):
                _require_entry_points()
        return self._config

    def graph(self) -> FeatureGraph:
        if self._graph is None:
            self._graph = self.config().load_graph()
        return self._graph

    def store(self, name: str | None = None, *, read_only: bool = True) -> MetadataStore:
        """Open a store (the default one without `name`); read-only where the backend can."""
        store = self.config().open_store(name, graph=self.graph(), read_only=read_only)
        self._opened.append(store)
        return store

    def feature(self, name: str) -> FeatureKey:
        """A feature of the graph by its key (`UnknownFeatureError` names the known ones)."""
        return self.graph().spec(name).key

    def close(self) -> None:
        for store in reversed(self._opened):
            store.close()
        self._opened.clear()

    # -- output --------------------------------------------------------------------------------

    def json(self, data: Any) -> None:
        """Print `data` as JSON on stdout (plain, so other tools can read it)."""
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")

    @contextmanager
    def busy(self, what: str) -> Generator[None]:
        """A spinner on a terminal's stderr while one long step runs (nothing when piped)."""
        if not self.err.is_terminal:
            yield
            return
        with self.err.status(what):
            yield

    def progress(self, items: Iterable[T], what: str) -> Iterator[T]:
        """Iterate with a progress bar on a terminal's stderr (nothing when piped)."""
        listed = list(items)
        if not self.err.is_terminal or len(listed) < 2:
            yield from listed
            return
        columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.err, transient=True) as bar:
            task = bar.add_task(what, total=len(listed))
            for item in listed:
                bar.update(task, description=f"{what} {item}")
                yield item
                bar.advance(task)


def _require_entry_points() -> None:
    """Without a file, a target or an entry point, say where the configuration should be."""
    from importlib.metadata import entry_points

    from metaxy_core.cli._discovery import ENTRY_POINT_GROUP

    if not entry_points(group=ENTRY_POINT_GROUP):
        raise ConfigError(
            "No metaxy configuration found: looked for metaxy.toml, or [tool.metaxy] in "
            "pyproject.toml, from the current directory up, and for packages registering "
            f"the {ENTRY_POINT_GROUP!r} entry point. Add one, set METAXY_CONFIG or "
            "METAXY_GRAPH, or pass --graph MODULE:ATTRIBUTE."
        )
