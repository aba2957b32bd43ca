"""Configuration: `[tool.metaxy]` (pyproject.toml) or metaxy.toml, METAXY_* variables, flags.

```toml
[tool.metaxy]
graph = "my_pipeline.features:graph"   # omit to merge the `metaxy.features` entry points
store = "dev"                          # the default store

[tool.metaxy.stores.dev]
uri = "duckdb://.metaxy/dev.duckdb"     # relative to this file; duckdb:///abs/path.duckdb

[tool.metaxy.stores.prod]
uri = "s3://bucket/metaxy"             # a Delta store; delta://path for a local directory
options = { AWS_REGION = "eu-west-1" }

[tool.metaxy.stores.preview]
uri = "duckdb://preview.duckdb"
fallback = "prod"                      # reads fall through to prod, writes stay local

[tool.metaxy.stores.warehouse]
uri = "postgresql://user@host/metadata"  # a SQLStore (PostgreSQL, ClickHouse)
```

Environment: `METAXY_CONFIG` (the file), `METAXY_GRAPH`, `METAXY_STORE` (a store name or
URI), and `METAXY_STORES__<NAME>__URI` / `__FALLBACK` to repoint a named store.
"""

import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from metaxy_core import stores  # DuckDB, Delta and SQL stores load when opened
from metaxy_core._errors import ConfigError, StoreError
from metaxy_core._graph import FeatureGraph
from metaxy_core.cli._discovery import graph_from_entry_points, graph_from_target
from metaxy_core.stores import MemoryStore, MetadataStore, PreviewStore
from metaxy_core.versioning import HashSettings

OBJECT_STORE_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "azure", "file", "lakefs")
SQL_SCHEMES = ("postgres", "postgresql", "clickhouse")
_STORE_KEYS = {"uri", "options", "fallback", "hash_algorithm", "hash_length", "lock_timeout"}
_TOP_KEYS = {"graph", "store", "stores"}


@dataclass(frozen=True)
class StoreConfig:
    """One named store: where it is and how to open it.

    Attributes:
        name: the name in the configuration (or the URI itself for an ad-hoc store).
        uri: `duckdb://PATH`, `delta://PATH`, an object-store URI (a Delta store), a
            `postgresql://` or `clickhouse://` URL (a SQLStore) or `memory://`; relative
            paths are relative to `base`.
        options: storage options for object stores (credentials, region, endpoint).
        fallback: the name of a store this one is layered over (a preview environment).
        hash_algorithm, hash_length: row hash settings (default: adopt the recorded ones).
        lock_timeout: seconds to wait for a DuckDB file another process holds.
        base: the directory relative paths resolve against.
    """

    name: str
    uri: str
    options: dict[str, str] = field(default_factory=dict[str, str])
    fallback: str | None = None
    hash_algorithm: str | None = None
    hash_length: int | None = None
    lock_timeout: float = 10.0
    base: Path = field(default_factory=Path.cwd)

    @property
    def kind(self) -> str:
        """`duckdb`, `delta`, `sql` or `memory`."""
        scheme = self.uri.split("://", 1)[0].lower() if "://" in self.uri else ""
        if scheme == "duckdb" or (not scheme and self.uri.endswith((".duckdb", ".db"))):
            return "duckdb"
        if scheme == "memory":
            return "memory"
        if scheme == "delta" or scheme in OBJECT_STORE_SCHEMES:
            return "delta"
        if scheme in SQL_SCHEMES:
            return "sql"
        raise ConfigError(
            f"Store {self.name!r}: unsupported URI {self.uri!r}. Use duckdb://PATH, delta://PATH, "
            f"an object-store URI ({', '.join(s + '://' for s in OBJECT_STORE_SCHEMES[:4])}...), "
            "postgresql://..., clickhouse://... or memory://."
        )

    @property
    def location(self) -> str:
        """The file, directory or URI the store opens (local paths made absolute)."""
        kind = self.kind
        if kind == "memory":
            return "memory://"
        if kind == "sql":
            return self.uri
        scheme, sep, rest = self.uri.partition("://")
        if kind == "delta" and scheme.lower() != "delta":
            return self.uri  # an object-store URI, passed through
        path = Path(rest if sep else self.uri).expanduser()
        return str(path if path.is_absolute() else self.base / path)


@dataclass(frozen=True)
class MetaxyConfig:
    """The resolved configuration: where the graph is and the named stores.

    Attributes:
        graph: a `module:attribute` target (None: merge the `metaxy.features` entry points).
        stores: the named stores.
        default_store: the store commands use without `--store`.
        source: the configuration file (None: none found).
        root: the directory graph modules are imported from (the file's, or the cwd).
    """

    graph: str | None = None
    stores: dict[str, StoreConfig] = field(default_factory=dict[str, StoreConfig])
    default_store: str | None = None
    source: Path | None = None
    root: Path = field(default_factory=Path.cwd)

    def load_graph(self) -> FeatureGraph:
        """Import the configured graph, or merge the entry points' graphs.

        Raises:
            ConfigError: the target cannot be imported or names no graph, or two packages
                define a feature key differently.
        """
        for path in (str(self.root), str(Path.cwd())):
            if path not in sys.path:
                sys.path.insert(0, path)
        if self.graph:
            return graph_from_target(self.graph)
        return graph_from_entry_points()

    def store_config(self, name_or_uri: str | None = None) -> StoreConfig:
        """The named store, an ad-hoc one from a URI, or the default store.

        Raises:
            ConfigError: no store is configured, or the name is unknown.
        """
        chosen = name_or_uri or self.default_store
        if chosen is None:
            if len(self.stores) == 1:
                return next(iter(self.stores.values()))
            raise ConfigError(
                "No store chosen: pass --store NAME|URI, set METAXY_STORE, or set store = NAME "
                f"in the configuration{_known(self.stores)}."
            )
        if chosen in self.stores:
            return self.stores[chosen]
        if "://" in chosen or chosen.endswith((".duckdb", ".db")):
            return StoreConfig(chosen, chosen, base=Path.cwd())
        raise ConfigError(f"Unknown store {chosen!r}{_known(self.stores)}.")

    def open_store(
        self,
        name_or_uri: str | None = None,
        *,
        graph: FeatureGraph,
        read_only: bool = False,
        hash_settings: HashSettings | None = None,
    ) -> MetadataStore:
        """Open a store for `graph` (read-only where the backend supports it).

        A store with a `fallback` opens as a `PreviewStore` over it; read-only, a missing
        local DuckDB file reads as empty, so a fresh preview shows the fallback.

        `hash_settings` apply where the store's configuration names none (a copy's target
        takes its source's).

        Raises:
            ConfigError: unknown store or URI, or a fallback cycle.
            StoreError: the store cannot be opened (a missing file read-only, a lock).
        """
        cfg = self.store_config(name_or_uri)
        if hash_settings is not None and cfg.hash_algorithm is None:
            cfg = replace(
                cfg,
                hash_algorithm=hash_settings.algorithm.value,
                hash_length=hash_settings.length,
            )
        return self._open(cfg, graph, read_only, seen=())

    def _open(
        self, cfg: StoreConfig, graph: FeatureGraph, read_only: bool, seen: tuple[str, ...]
    ) -> MetadataStore:
        if cfg.name in seen:
            raise ConfigError(f"Store fallbacks form a cycle: {' -> '.join([*seen, cfg.name])}.")
        if cfg.fallback is None:
            return open_one(cfg, graph, read_only=read_only)
        if cfg.fallback not in self.stores:
            raise ConfigError(
                f"Store {cfg.name!r} falls back to unknown store {cfg.fallback!r}"
                f"{_known(self.stores)}."
            )
        fallback = self._open(self.stores[cfg.fallback], graph, True, (*seen, cfg.name))
        try:
            if read_only and cfg.kind == "duckdb" and not Path(cfg.location).exists():
                local: MetadataStore = MemoryStore(graph)  # nothing written locally yet
            else:
                local = open_one(cfg, graph, read_only=read_only)
            return PreviewStore(local, fallback)
        except BaseException:
            fallback.close()
            raise


def open_one(cfg: StoreConfig, graph: FeatureGraph, *, read_only: bool) -> MetadataStore:
    """Open one store (no fallback).

    Raises:
        StoreError: read-only, a missing DuckDB file or local Delta directory.
    """
    settings = (
        HashSettings(cfg.hash_algorithm, length=cfg.hash_length)  # type: ignore[arg-type]
        if cfg.hash_algorithm
        else None
    )
    kind, location = cfg.kind, cfg.location
    if kind == "memory":
        return MemoryStore(graph, hash_settings=settings)
    if kind == "sql":
        return stores.SQLStore(location, graph, hash_settings=settings)
    if kind == "duckdb":
        return stores.DuckDBStore(
            location,
            graph,
            hash_settings=settings,
            read_only=read_only,
            lock_timeout=cfg.lock_timeout,
        )
    if read_only and "://" not in location and not Path(location).is_dir():
        raise StoreError(f"Store {cfg.name!r}: the Delta directory {location} does not exist.")
    return stores.DeltaStore(
        location, graph, hash_settings=settings, storage_options=cfg.options or None
    )


def load_config(
    *,
    config: str | Path | None = None,
    graph: str | None = None,
    store: str | None = None,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> MetaxyConfig:
    """The configuration: the file, overridden by METAXY_* variables, overridden by arguments.

    Args:
        config: the configuration file (default: METAXY_CONFIG, else the nearest
            metaxy.toml or pyproject.toml with [tool.metaxy] from `cwd` upwards).
        graph: a `module:attribute` target (overrides METAXY_GRAPH and the file).
        store: the default store, a name or a URI (overrides METAXY_STORE and the file).
        cwd: where to start looking (default: the current directory).
        environ: the environment (default: `os.environ`).

    Returns:
        A `MetaxyConfig`.

    Raises:
        ConfigError: the file is missing or malformed, or holds unknown keys.

    Example:
        >>> cfg = load_config(graph="my_pipeline.features:graph", store="duckdb://m.duckdb")
        >>> cfg.store_config().kind
        'duckdb'
    """
    env = os.environ if environ is None else environ
    start = (cwd or Path.cwd()).resolve()
    path = (
        Path(config)
        if config
        else (Path(env["METAXY_CONFIG"]) if env.get("METAXY_CONFIG") else None)
    )
    if path is not None and not path.is_file():
        raise ConfigError(f"Configuration file {path} does not exist.")
    table: dict[str, Any] = {}
    if path is None:
        path, table = _find(start)
    else:
        path = path.resolve()
        table = _read(path)
    base = path.parent if path is not None else start
    _check_keys(table, _TOP_KEYS, "the configuration", path)
    stores = _stores(table.get("stores", {}), base, path)
    stores = _env_overrides(stores, env, base)
    return MetaxyConfig(
        graph=graph or env.get("METAXY_GRAPH") or _text(table, "graph", path),
        stores=stores,
        default_store=store or env.get("METAXY_STORE") or _text(table, "store", path),
        source=path,
        root=base,
    )


def _find(start: Path) -> tuple[Path | None, dict[str, Any]]:
    """The nearest metaxy.toml, or pyproject.toml holding [tool.metaxy], from `start` up."""
    for directory in (start, *start.parents):
        own = directory / "metaxy.toml"
        if own.is_file():
            return own, _read(own)
        project = directory / "pyproject.toml"
        if project.is_file():
            data = _read(project, section=False)
            tool = cast(dict[str, Any], data.get("tool", {}))
            if "metaxy" in tool:
                section = tool["metaxy"]
                if not isinstance(section, dict):
                    raise ConfigError(f"{project}: [tool.metaxy] must be a table.")
                return project, cast(dict[str, Any], section)
    return None, {}


def _read(path: Path, *, section: bool = True) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Cannot read configuration file {path}: {exc}") from exc
    if section and path.name == "pyproject.toml":
        tool = cast(dict[str, Any], data.get("tool", {}))
        return cast(dict[str, Any], tool.get("metaxy", {}))
    return data


def _stores(raw: Any, base: Path, path: Path | None) -> dict[str, StoreConfig]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: 'stores' must be a table of named stores.")
    out: dict[str, StoreConfig] = {}
    for name, spec in cast(dict[str, Any], raw).items():
        where = f"store {name!r}"
        if isinstance(spec, str):
            spec = {"uri": spec}
        if not isinstance(spec, dict) or "uri" not in spec:
            raise ConfigError(f"{path}: {where} needs a uri (e.g. uri = 'duckdb://meta.duckdb').")
        spec = cast(dict[str, Any], spec)
        _check_keys(spec, _STORE_KEYS, where, path)
        options = spec.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(f"{path}: {where}: options must be a table of text values.")
        out[name] = StoreConfig(
            name,
            str(spec["uri"]),
            {str(k): str(v) for k, v in cast(dict[str, Any], options).items()},
            spec.get("fallback"),
            spec.get("hash_algorithm"),
            spec.get("hash_length"),
            float(spec.get("lock_timeout", 10.0)),
            base,
        )
        out[name].kind  # noqa: B018 - refuse an unsupported URI when the file is read
    return out


def _env_overrides(
    stores: dict[str, StoreConfig], env: Mapping[str, str], base: Path
) -> dict[str, StoreConfig]:
    """METAXY_STORES__<NAME>__URI / __FALLBACK repoint (or add) named stores."""
    out = dict(stores)
    for variable, value in sorted(env.items()):
        parts = variable.split("__")
        if len(parts) != 3 or parts[0] != "METAXY_STORES":
            continue
        name = next((n for n in out if n.upper() == parts[1].upper()), parts[1].lower())
        current = out.get(name, StoreConfig(name, value, base=Path.cwd()))
        if parts[2] == "URI":
            current = StoreConfig(
                name,
                value,
                current.options,
                current.fallback,
                current.hash_algorithm,
                current.hash_length,
                current.lock_timeout,
                Path.cwd(),
            )
        elif parts[2] == "FALLBACK":
            current = StoreConfig(
                name,
                current.uri,
                current.options,
                value or None,
                current.hash_algorithm,
                current.hash_length,
                current.lock_timeout,
                current.base,
            )
        else:
            raise ConfigError(f"{variable}: unknown setting {parts[2]!r}; use URI or FALLBACK.")
        current.kind  # noqa: B018 - refuse an unsupported URI now
        out[name] = current
    return out


def _check_keys(table: Mapping[str, Any], known: set[str], where: str, path: Path | None) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{path}: {where} has unknown key(s) {unknown}; known: {sorted(known)}.")


def _text(table: Mapping[str, Any], key: str, path: Path | None) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{path}: {key!r} must be text, got {value!r}.")
    return value


def _known(stores: Mapping[str, StoreConfig]) -> str:
    return f"; configured stores: {', '.join(sorted(stores))}" if stores else ""
