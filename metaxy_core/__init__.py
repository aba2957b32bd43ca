"""metaxy_core: sample-level versioning of feature metadata (never imports dagster)."""

from metaxy_core import _columns as columns
from metaxy_core._errors import (
    GraphError as GraphError,
    HashSettingsMismatchError as HashSettingsMismatchError,
    InvalidKeyError as InvalidKeyError,
    MetaxyError as MetaxyError,
    OutOfIncrementError as OutOfIncrementError,
    SpecError as SpecError,
    StoreError as StoreError,
    StoreLockedError as StoreLockedError,
    UnknownFeatureError as UnknownFeatureError,
    WriteValidationError as WriteValidationError,
)
from metaxy_core._feature import Feature as Feature
from metaxy_core._graph import FeatureDefinition as FeatureDefinition, FeatureGraph as FeatureGraph
from metaxy_core._increments import (
    Increment as Increment,
    IncrementStatus as IncrementStatus,
    StaleReason as StaleReason,
    stamp_children as stamp_children,
)
from metaxy_core._keys import FeatureKey as FeatureKey
from metaxy_core._spec import (
    FeatureDep as FeatureDep,
    FeatureSpec as FeatureSpec,
    FieldDep as FieldDep,
    FieldSpec as FieldSpec,
    Lineage as Lineage,
)
from metaxy_core.stores import (
    DeltaStore as DeltaStore,
    DuckDBStore as DuckDBStore,
    MemoryStore as MemoryStore,
    MetadataStore as MetadataStore,
)
from metaxy_core.versioning import (
    HashAlgorithm as HashAlgorithm,
    HashSettings as HashSettings,
    feature_code_version as feature_code_version,
    feature_version as feature_version,
    field_version as field_version,
    project_version as project_version,
)

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
    "SpecError",
    "StaleReason",
    "StoreError",
    "StoreLockedError",
    "UnknownFeatureError",
    "WriteValidationError",
    "columns",
    "feature_code_version",
    "feature_version",
    "field_version",
    "project_version",
    "stamp_children",
]
