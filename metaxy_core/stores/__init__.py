"""Metadata stores: one contract (`MetadataStore`), several backends."""

from metaxy_core.stores._base import MetadataStore as MetadataStore
from metaxy_core.stores._memory import MemoryStore as MemoryStore

__all__ = ["MemoryStore", "MetadataStore"]
