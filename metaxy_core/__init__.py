"""metaxy_core: sample-level versioning of feature metadata (never imports dagster)."""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from metaxy_core import _columns as columns
from metaxy_core import _explain as explain
from metaxy_core import _migrations as migrations
from metaxy_core._definition import FeatureDefinition as FeatureDefinition
from metaxy_core._errors import (
    GraphError as GraphError,
)
from metaxy_core._errors import (
    HashSettingsMismatchError as HashSettingsMismatchError,
)
from metaxy_core._errors import (
    InvalidKeyError as InvalidKeyError,
)
from metaxy_core._errors import (
    MetaxyError as MetaxyError,
)
from metaxy_core._errors import (
    OutOfIncrementError as OutOfIncrementError,
)
from metaxy_core._errors import (
    SpecError as SpecError,
)
from metaxy_core._errors import (
    StoreError as StoreError,
)
from metaxy_core._errors import (
    StoreLockedError as StoreLockedError,
)
from metaxy_core._errors import (
    UnknownFeatureError as UnknownFeatureError,
)
from metaxy_core._errors import (
    WriteValidationError as WriteValidationError,
)
from metaxy_core._evolution import GraphChanges as GraphChanges
from metaxy_core._feature import Feature as Feature
from metaxy_core._graph import FeatureGraph as FeatureGraph
from metaxy_core._increments import (
    Increment as Increment,
)
from metaxy_core._increments import (
    IncrementStatus as IncrementStatus,
)
from metaxy_core._increments import (
    StaleReason as StaleReason,
)
from metaxy_core._increments import (
    stamp_children as stamp_children,
)
from metaxy_core._keys import FeatureKey as FeatureKey
from metaxy_core._spec import (
    FeatureDep as FeatureDep,
)
from metaxy_core._spec import (
    FeatureSpec as FeatureSpec,
)
from metaxy_core._spec import (
    FieldDep as FieldDep,
)
from metaxy_core._spec import (
    FieldSpec as FieldSpec,
)
from metaxy_core._spec import (
    Lineage as Lineage,
)
from metaxy_core.stores import (
    MemoryStore as MemoryStore,
)
from metaxy_core.stores import (
    MetadataStore as MetadataStore,
)
from metaxy_core.stores import (
    PreviewStore as PreviewStore,
)
from metaxy_core.versioning import (
    HashAlgorithm as HashAlgorithm,
)
from metaxy_core.versioning import (
    HashSettings as HashSettings,
)
from metaxy_core.versioning import (
    feature_code_version as feature_code_version,
)
from metaxy_core.versioning import (
    feature_version as feature_version,
)
from metaxy_core.versioning import (
    field_version as field_version,
)
from metaxy_core.versioning import (
    project_version as project_version,
)

if _TYPE_CHECKING:  # loaded on first use (see metaxy_core.stores), typed as usual
    from metaxy_core.stores import DeltaStore as DeltaStore
    from metaxy_core.stores import DuckDBStore as DuckDBStore
    from metaxy_core.stores import SQLStore as SQLStore

__all__ = [
    "DeltaStore",
    "DuckDBStore",
    "Feature",
    "FeatureDefinition",
    "FeatureDep",
    "FeatureGraph",
    "FeatureKey",
    "FeatureSpec",
    "FieldDep",
    "FieldSpec",
    "GraphChanges",
    "GraphError",
    "HashAlgorithm",
    "HashSettings",
    "HashSettingsMismatchError",
    "Increment",
    "IncrementStatus",
    "InvalidKeyError",
    "Lineage",
    "MemoryStore",
    "MetadataStore",
    "MetaxyError",
    "OutOfIncrementError",
    "PreviewStore",
    "SQLStore",
    "SpecError",
    "StaleReason",
    "StoreError",
    "StoreLockedError",
    "UnknownFeatureError",
    "WriteValidationError",
    "columns",
    "explain",
    "feature_code_version",
    "feature_version",
    "field_version",
    "migrations",
    "project_version",
    "stamp_children",
]


def __getattr__(name: str) -> _Any:
    """The DuckDB, Delta and SQL stores, loaded with their engines on first use (PEP 562)."""
    from metaxy_core import stores

    if name not in stores.LAZY_STORES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(stores, name)
    globals()[name] = value
    return value
