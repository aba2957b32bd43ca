"""The store resource: builds a metaxy store for a graph and stamps the Dagster run id on writes."""

import os
from typing import Any

import dagster as dg
from dagster_deltalake import AzureConfig, GcsConfig, LocalConfig, S3Config
from dagster_deltalake.config import ClientConfig
from dagster_duckdb import DuckDBResource
from pydantic import Field, PrivateAttr

import metaxy_core as mx

DEFAULT_DUCKDB_FILE = "metaxy.duckdb"
DeltaStorage = LocalConfig | S3Config | AzureConfig | GcsConfig


class MetaxyStore(dg.ConfigurableResource):
    """A metaxy metadata store as a Dagster resource (a DuckDB file unless a Delta URI is set).

    Every row written through `write` carries the Dagster run id as its
    `metaxy_materialization_id`. Storage is configured like other Dagster assets: pass
    the `dagster_duckdb.DuckDBResource` the code location already has (same file, same
    connection config), or `dagster_deltalake` storage and client configs for Delta.

    Example:
        >>> store = MetaxyStore(graph=graph, duckdb_path="meta.duckdb")  # doctest: +SKIP
        >>> store.open().resolve_update("crop").describe()                # doctest: +SKIP
        'crop: 0 new, 0 stale, 0 orphaned'
    """

    graph: dg.ResourceDependency[mx.FeatureGraph] = Field(
        description="The metaxy FeatureGraph whose features this store holds."
    )
    duckdb_path: str | None = Field(
        default=None,
        description=(
            "Path of the embedded DuckDB database file (used when neither delta_uri nor "
            f"sql_url is set; default: the duckdb resource's database, else {DEFAULT_DUCKDB_FILE})."
        ),
    )
    duckdb: DuckDBResource | None = Field(
        default=None,
        description=(
            "A dagster_duckdb DuckDBResource: the store uses its database file and its "
            "connection_config (instead of duckdb_path)."
        ),
    )
    lock_timeout: float = Field(
        default=60.0,
        description=(
            "Seconds to wait for another process (a run, the sensor) to release the DuckDB "
            "file before failing."
        ),
    )
    sensor_lock_timeout: float = Field(
        default=10.0,
        description=(
            "Seconds a sensor tick waits for the DuckDB file before skipping the tick with "
            "a message naming the lock holder (well inside Dagster's 60 s sensor deadline)."
        ),
    )
    delta_uri: str | None = Field(
        default=None,
        description="Directory or object-store URI of a Delta Lake store (used instead of DuckDB).",
    )
    sql_url: str | None = Field(
        default=None,
        description=(
            "URL of a SQL database for a SQLStore (postgresql://user:pw@host/db, "
            "clickhouse://...), used instead of DuckDB; increments are computed inside it."
        ),
    )
    delta_storage: DeltaStorage = Field(
        default_factory=LocalConfig,
        discriminator="provider",
        description=(
            "The Delta store's object storage as a dagster_deltalake config: LocalConfig "
            "(default), S3Config, AzureConfig or GcsConfig."
        ),
    )
    delta_client: ClientConfig | None = Field(
        default=None,
        description="HTTP client options of the Delta store (a dagster_deltalake ClientConfig).",
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Raw object-store options for the Delta store (credentials, region, endpoint), "
            "added to those of delta_storage and delta_client."
        ),
    )
    hash_algorithm: str | None = Field(
        default=None,
        description="Row hash algorithm (xxh3_64, md5 or sha256); None adopts the recorded one.",
    )
    hash_length: int | None = Field(
        default=None,
        description="Keep this many leading characters of each hash; None keeps the whole hash.",
    )
    store: dg.ResourceDependency[mx.MetadataStore | None] = Field(
        default=None,
        description="A ready metaxy store (e.g. a MemoryStore) used instead of building one.",
    )

    _opened: mx.MetadataStore | None = PrivateAttr(default=None)
    _run_id: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run.run_id if context.run is not None else None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    @property
    def run_id(self) -> str | None:
        """The Dagster run id of the current run (None outside runs, e.g. in sensors)."""
        return self._run_id

    def open(self, *, lock_timeout: float | None = None) -> mx.MetadataStore:
        """The metaxy store, opened once per resource instance.

        Args:
            lock_timeout: how long to wait for a DuckDB file another process holds
                (default: the `lock_timeout` field; sensors pass `sensor_lock_timeout`).

        Returns:
            The injected `store`, a `DeltaStore` if `delta_uri` is set, else a `DuckDBStore`.

        Raises:
            StoreLockedError: the DuckDB file stayed locked for the whole wait.
        """
        if self.store is not None:
            return self.store
        if self._opened is None:
            self._opened = self._build(self.lock_timeout if lock_timeout is None else lock_timeout)
        return self._opened

    @property
    def is_single_writer(self) -> bool:
        """True for an embedded DuckDB file: one process writes at a time."""
        if self.store is not None:
            return isinstance(self.store, mx.DuckDBStore)
        return self.delta_uri is None and self.sql_url is None

    @property
    def database_path(self) -> str:
        """The DuckDB file: `duckdb_path`, else the duckdb resource's database, else the default.

        Raises:
            SpecError: `duckdb_path` and the duckdb resource name different files.
        """
        resource = self.duckdb.database if self.duckdb is not None else None
        if (
            self.duckdb_path is not None
            and resource is not None
            and os.path.abspath(resource) != os.path.abspath(self.duckdb_path)
        ):
            raise mx.SpecError(
                f"MetaxyStore got duckdb_path={self.duckdb_path!r} and a duckdb resource with "
                f"database={resource!r}: set one of them (or the same file in both)."
            )
        return self.duckdb_path or resource or DEFAULT_DUCKDB_FILE

    @property
    def delta_storage_options(self) -> dict[str, str]:
        """The Delta store's storage options: delta_storage, delta_client and storage_options.

        Raises:
            SpecError: two of them give one option different values.
        """
        merged: dict[str, str] = {}
        sources = {
            "delta_storage": _str_dict(self.delta_storage),
            "delta_client": _str_dict(self.delta_client),
            "storage_options": dict(self.storage_options),
        }
        given_by: dict[str, str] = {}
        for source, options in sources.items():
            for name, value in options.items():
                if name == "provider":  # which config class it was, not an object-store option
                    continue
                if name in merged and merged[name] != value:
                    raise mx.SpecError(
                        f"MetaxyStore: storage option {name!r} is {merged[name]!r} in "
                        f"{given_by[name]} but {value!r} in {source}: give it once."
                    )
                merged[name], given_by[name] = value, source
        return merged

    def check_config(self) -> None:
        """Refuse storage settings that contradict each other (also checked on open).

        Raises:
            SpecError: two backends are set (e.g. `delta_uri` and a `duckdb` resource),
                Delta storage settings without `delta_uri`, `duckdb_path` and the duckdb
                resource naming different files, or one storage option given two values.
        """
        if self.store is not None:
            return
        backends = [n for n in ("delta_uri", "sql_url") if getattr(self, n) is not None]
        duckdb = [n for n in ("duckdb_path", "duckdb") if getattr(self, n) is not None]
        if len(backends) > 1 or (backends and duckdb):
            raise mx.SpecError(
                f"MetaxyStore got {[*backends, *duckdb]}: they name different stores; set one."
            )
        delta_only = [
            name
            for name, unset in (
                ("delta_storage", isinstance(self.delta_storage, LocalConfig)),
                ("delta_client", self.delta_client is None),
                ("storage_options", not self.storage_options),
            )
            if not unset
        ]
        if delta_only and self.delta_uri is None:
            raise mx.SpecError(
                f"MetaxyStore got {delta_only} but no delta_uri: they configure the Delta "
                "store only. Set delta_uri (e.g. s3://bucket/metaxy)."
            )
        if self.delta_uri is not None:
            self.delta_storage_options  # noqa: B018 (raises on conflicting options)
        elif self.sql_url is None:
            self.database_path  # noqa: B018 (raises on two different files)

    def _build(self, lock_timeout: float) -> mx.MetadataStore:
        self.check_config()
        settings = None
        if self.hash_algorithm is not None:
            settings = mx.HashSettings(self.hash_algorithm, length=self.hash_length)
        if self.sql_url is not None:
            return mx.SQLStore(self.sql_url, self.graph, hash_settings=settings)
        if self.delta_uri is not None:
            return mx.DeltaStore(
                self.delta_uri,
                self.graph,
                hash_settings=settings,
                storage_options=self.delta_storage_options,
            )
        return mx.DuckDBStore(
            self.database_path,
            self.graph,
            hash_settings=settings,
            lock_timeout=lock_timeout,
            config=self._duckdb_config(),
        )

    def _duckdb_config(self) -> dict[str, Any] | None:
        """The duckdb resource's connection config, exactly as its `get_connection` passes it.

        DuckDB shares one database per file and process and refuses a second connection
        with other options: the same options let the store and the user's own assets
        (`duckdb.get_connection()`) hold the file at once within a run.
        """
        if self.duckdb is None:
            return None
        return {"custom_user_agent": "dagster", **self.duckdb.connection_config}

    def close(self) -> None:
        """Close a store this resource built (an injected store stays open)."""
        if self._opened is not None:
            self._opened.close()
            self._opened = None

    def write(self, feature: Any, rows: Any) -> int:
        """Write rows for `feature`, stamped with the current run id; returns the rows written."""
        return self.open().write(feature, rows, materialization_id=self._run_id)

    def delete(self, feature: Any, ids: Any) -> int:
        """Soft-delete samples of `feature` with markers stamped with the current run id."""
        return self.open().delete(feature, ids, materialization_id=self._run_id)


def _str_dict(config: dg.Config | None) -> dict[str, str]:
    """A dagster_deltalake config as deltalake storage options, None values left out.

    Like the configs' own `str_dict()`, which calls pydantic's deprecated `dict()`.
    """
    if config is None:
        return {}
    return {k: str(v) for k, v in config.model_dump().items() if v is not None}


def _with_config_fields(cls: type[dg.ConfigurableResource]) -> None:
    """Lead `help(cls)` with the config fields and their descriptions (the UI shows the same)."""
    lines = [f"        {name}: {field.description}" for name, field in cls.model_fields.items()]
    cls.__doc__ = f"{cls.__doc__}\n    Config fields:\n" + "\n".join(lines) + "\n"


_with_config_fields(MetaxyStore)
