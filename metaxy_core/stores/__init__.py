"""Metadata stores: one contract (`MetadataStore`), several backends."""

from metaxy_core.stores._base import MetadataStore as MetadataStore
from metaxy_core.stores._delta import DeltaStore as DeltaStore
from metaxy_core.stores._duckdb import DuckDBStore as DuckDBStore
from metaxy_core.stores._memory import MemoryStore as MemoryStore
from metaxy_core.stores._preview import PreviewStore as PreviewStore
from metaxy_core.stores._sql import SQLStore as SQLStore

__all__ = ["DeltaStore", "DuckDBStore", "MemoryStore", "MetadataStore", "PreviewStore", "SQLStore"]
