"""metaxy_dagster: the Dagster face of metaxy_core (assets, IO, sensors, sources, checks)."""

from metaxy_dagster._assets import feature_asset as feature_asset
from metaxy_dagster._assets import feature_assets as feature_assets
from metaxy_dagster._checks import feature_checks as feature_checks
from metaxy_dagster._definitions import build_definitions as build_definitions
from metaxy_dagster._io_manager import MetaxyIOManager as MetaxyIOManager
from metaxy_dagster._metadata import feature_asset_key as feature_asset_key
from metaxy_dagster._migrations import accept_job as accept_job
from metaxy_dagster._migrations import accept_op as accept_op
from metaxy_dagster._partitions import batch_partitions as batch_partitions
from metaxy_dagster._resources import MetaxyStore as MetaxyStore
from metaxy_dagster._sensors import cleanup_sensor as cleanup_sensor
from metaxy_dagster._sensors import increment_sensor as increment_sensor
from metaxy_dagster._sources import source_assets as source_assets
from metaxy_dagster._ticks import ChangeSource as ChangeSource

__all__ = [
    "ChangeSource",
    "MetaxyIOManager",
    "MetaxyStore",
    "accept_job",
    "accept_op",
    "batch_partitions",
    "build_definitions",
    "cleanup_sensor",
    "feature_asset",
    "feature_asset_key",
    "feature_assets",
    "feature_checks",
    "increment_sensor",
    "source_assets",
]
