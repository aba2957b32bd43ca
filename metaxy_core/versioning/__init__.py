"""Pure versioning: definition versions and the row hash settings."""

from metaxy_core.versioning._definitions import (
    feature_code_version as feature_code_version,
)
from metaxy_core.versioning._definitions import (
    feature_version as feature_version,
)
from metaxy_core.versioning._definitions import (
    field_version as field_version,
)
from metaxy_core.versioning._definitions import (
    project_version as project_version,
)
from metaxy_core.versioning._hashing import (
    HashAlgorithm as HashAlgorithm,
)
from metaxy_core.versioning._hashing import (
    HashSettings as HashSettings,
)

__all__ = [
    "HashAlgorithm",
    "HashSettings",
    "feature_code_version",
    "feature_version",
    "field_version",
    "project_version",
]
