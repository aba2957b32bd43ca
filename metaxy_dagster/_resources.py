"""The store resource: builds a metaxy store for a graph and stamps the Dagster run id on writes."""

from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

import metaxy_core as mx


class MetaxyStore(dg.ConfigurableResource):
    """A metaxy metadata store as a Dagster resource (a DuckDB file unless a Delta URI is set).

    Every row written through `write` carries the Dagster run id as its
    `metaxy_materialization_id`.

    Example:
        >>> store = MetaxyStore(graph=graph, duckdb_path="meta.duckdb")  # doctest: +SKIP
        >>> store.open().resolve_update("crop").describe()                # doctest: +SKIP
        'crop: 0 new, 0 stale, 0 orphaned'
    """

    graph: dg.ResourceDependency[mx.FeatureGraph] = Field(
        description="The metaxy FeatureGraph whose features this store holds."
    )
    duckdb_path: str = Field(
        default="metaxy.duckdb",
        description="Path of the embedded DuckDB database file (used when delta_uri is not set).",
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
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="Object-store options for the Delta store (credentials, region, endpoint).",
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

    def _build(self, lock_timeout: float) -> mx.MetadataStore:
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
                storage_options=self.storage_options,
            )
        return mx.DuckDBStore(
            self.duckdb_path, self.graph, hash_settings=settings, lock_timeout=lock_timeout
        )

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


def _with_config_fields(cls: type[dg.ConfigurableResource]) -> None:
    """Lead `help(cls)` with the config fields and their descriptions (the UI shows the same)."""
    lines = [f"        {name}: {field.description}" for name, field in cls.model_fields.items()]
    cls.__doc__ = f"{cls.__doc__}\n    Config fields:\n" + "\n".join(lines) + "\n"


_with_config_fields(MetaxyStore)
