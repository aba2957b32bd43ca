"""Metadata stores: one contract (`MetadataStore`), several backends.

The DuckDB, Delta and SQL stores load on first use, with their engines (duckdb and pyarrow,
deltalake, ibis): `import metaxy_core`, and so every `metaxy` command, pays only for the
store it opens.
"""

import importlib
from typing import TYPE_CHECKING, Any

from metaxy_core.stores._base import MetadataStore as MetadataStore
from metaxy_core.stores._memory import MemoryStore as MemoryStore
from metaxy_core.stores._preview import PreviewStore as PreviewStore

if TYPE_CHECKING:  # the classes as type checkers see them; `__getattr__` loads them at run time
    from metaxy_core.stores._delta import DeltaStore as DeltaStore
    from metaxy_core.stores._duckdb import DuckDBStore as DuckDBStore
    from metaxy_core.stores._sql import SQLStore as SQLStore

__all__ = ["DeltaStore", "DuckDBStore", "MemoryStore", "MetadataStore", "PreviewStore", "SQLStore"]

LAZY_STORES = {
    "DeltaStore": "metaxy_core.stores._delta",
    "DuckDBStore": "metaxy_core.stores._duckdb",
    "SQLStore": "metaxy_core.stores._sql",
}


def __getattr__(name: str) -> Any:
    """Load a store module on first use of its class (PEP 562)."""
    module = LAZY_STORES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
