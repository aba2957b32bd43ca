"""Every error metaxy_core raises derives from `MetaxyError`."""


class MetaxyError(Exception):
    """Root of all metaxy errors."""


class InvalidKeyError(MetaxyError, ValueError):
    """A feature or field key is malformed."""


class SpecError(MetaxyError, ValueError):
    """A feature, field or dependency spec is invalid."""


class GraphError(MetaxyError):
    """The feature graph is inconsistent (unknown deps, cycles, collisions)."""


class UnknownFeatureError(GraphError, KeyError):
    """A feature key is not part of the graph or store."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class WriteValidationError(MetaxyError, ValueError):
    """Rows handed to a store are invalid; nothing was written."""


class StoreError(MetaxyError):
    """A metadata store cannot be opened or used as asked."""


class StoreLockedError(StoreError):
    """Another writer holds the store and did not release it in time."""


class HashSettingsMismatchError(StoreError):
    """The store was created with other hash settings than the ones requested."""


class OutOfIncrementError(MetaxyError, ValueError):
    """Rows were returned for samples that are not part of the increment."""


class ConfigError(MetaxyError, ValueError):
    """The metaxy configuration (pyproject.toml, metaxy.toml, METAXY_* variables) is invalid."""
