"""PreviewStore: a local store layered over a read-only fallback (a preview environment)."""

from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from typing import Any

import narwhals as nw
import polars as pl

from metaxy_core import _columns as C
from metaxy_core._errors import HashSettingsMismatchError, StoreError
from metaxy_core._graph import FeatureGraph
from metaxy_core.stores._base import MetadataStore
from metaxy_core.stores._system_tables import SETTINGS_TABLE
from metaxy_core.versioning._hashing import HashSettings
from metaxy_core.versioning._polars_engine import PolarsEngine


class PreviewStore(MetadataStore):
    """A local store over a read-only fallback: reads merge both, writes stay local.

    Every table reads as the fallback's rows plus the local ones, the latest row per
    sample winning (rows written locally are newer than the fallback rows they replace),
    so increments are computed against the merged view: a branch recomputes only what its
    changes invalidate. Writes, soft deletes, snapshots and audit records go to `local`;
    the fallback is never written. Typical use: a local DuckDB file over the production
    Delta URI, for a preview of a branch.

    Merged reads run in polars: each side's current rows are brought into polars (lazily
    for Delta and memory, collected for DuckDB), so keep a DuckDB fallback small.

    Args:
        local: the store that receives every write (its graph is the preview's graph).
        fallback: the store read where `local` holds nothing newer; never written.

    Raises:
        HashSettingsMismatchError: the two stores hash rows differently.

    Example:
        >>> prod = DeltaStore("s3://bucket/metaxy", graph)               # doctest: +SKIP
        >>> store = PreviewStore(DuckDBStore("preview.duckdb", graph), prod)  # doctest: +SKIP
        >>> store.resolve_update("crop").describe()                     # doctest: +SKIP
    """

    def __init__(self, local: MetadataStore, fallback: MetadataStore) -> None:
        if not isinstance(local, MetadataStore) or not isinstance(fallback, MetadataStore):
            raise StoreError("PreviewStore(local, fallback) needs two metadata stores.")
        if local is fallback:
            raise StoreError("PreviewStore: the local store and the fallback are the same store.")
        settings = self._shared_settings(local, fallback)
        super().__init__(local.graph, hash_settings=settings)
        self.local = local
        self.fallback = fallback
        self.engine = PolarsEngine()
        self._open()

    @property
    def graph(self) -> FeatureGraph:
        """The preview's feature graph (assigning it also assigns the local store's)."""
        return self._graph

    @graph.setter
    def graph(self, graph: FeatureGraph) -> None:
        MetadataStore.graph.fset(self, graph)  # type: ignore[union-attr]
        self.local.graph = graph

    @staticmethod
    def _shared_settings(local: MetadataStore, fallback: MetadataStore) -> HashSettings:
        """The hash settings both stores use; an empty local store adopts the fallback's."""
        if local.hash_settings == fallback.hash_settings:
            return local.hash_settings
        if not local._exists(SETTINGS_TABLE) and local._requested_settings is None:
            local.hash_settings = fallback.hash_settings
            return fallback.hash_settings
        raise HashSettingsMismatchError(
            f"PreviewStore: the local store hashes with {local.hash_settings.describe()} but the "
            f"fallback with {fallback.hash_settings.describe()}; rows of one would read as stale "
            "in the other. Open the local store with the fallback's hash settings."
        )

    # -- primitives --------------------------------------------------------------------------

    def _exists(self, table: str) -> bool:
        return self.local._exists(table) or self.fallback._exists(table)

    def _scan(self, table: str) -> nw.LazyFrame[Any]:
        return self._merged(table, lambda store: store._scan(table))

    def _scan_latest(self, table: str, ids: Sequence[str]) -> nw.LazyFrame[Any]:
        merged = self._merged(table, lambda store: store._scan_latest(table, ids))
        return self.engine.latest(merged, ids, C.WRITE_ID)

    def _append(self, table: str, rows: pl.DataFrame) -> None:
        self.local._append(table, rows)

    def _create_if_absent(self, table: str, rows: pl.DataFrame) -> bool:
        if self.fallback._exists(table):
            return False
        return self.local._create_if_absent(table, rows)

    def _hard_delete(self, table: str, ids: pl.DataFrame) -> None:
        raise StoreError(
            f"PreviewStore: hard deletes would leave the fallback's rows of {table!r} visible, "
            "and the fallback is never written. Soft-delete instead (store.delete without "
            "hard=True): the local markers hide the fallback rows."
        )

    @contextmanager
    def _locked(self, table: str) -> Generator[None]:
        local_lock = getattr(self.local, "_locked", None)
        if local_lock is None:
            yield
        else:
            with local_lock(table):
                yield

    def _close(self) -> None:
        try:
            self.local.close()
        finally:
            self.fallback.close()

    # -- merging -------------------------------------------------------------------------------

    def _merged(
        self, table: str, scan: Callable[[MetadataStore], nw.LazyFrame[Any]]
    ) -> nw.LazyFrame[Any]:
        """Both sides' frames of `table` (where they exist) as one polars lazy frame."""
        parts = [
            _as_polars(store, table, scan(store))
            for store in (self.fallback, self.local)
            if store._exists(table)
        ]
        if not parts:
            raise StoreError(f"PreviewStore: no table {table!r} in either store.")
        return nw.from_native(parts[0] if len(parts) == 1 else _concat(parts))


def _as_polars(store: MetadataStore, table: str, frame: nw.LazyFrame[Any]) -> pl.LazyFrame:
    """A side's frame in polars: lazy if it is already, else collected in its written types."""
    native = frame.to_native()
    if isinstance(native, pl.LazyFrame):
        return native
    rows = frame.collect(backend="polars").to_native()
    return store._restore_types(table, rows).lazy()  # pyright: ignore[reportPrivateUsage]


def _concat(parts: list[pl.LazyFrame]) -> pl.LazyFrame:
    """Concatenate frames whose columns may differ (a column added on one side only)."""
    return pl.concat(parts, how="diagonal_relaxed")
