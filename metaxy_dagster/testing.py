"""Test a code location like the Dagster daemon runs it, on a temporary instance.

`SensorTester` ticks a sensor through a real evaluation context, keeps its cursor between
ticks, applies its dynamic partition requests to the instance and executes the runs it
requests in process. Each tick or step returns a `SensorStep` saying what happened.
"""

from metaxy_dagster._testing import SensorStep as SensorStep
from metaxy_dagster._testing import SensorTester as SensorTester
from metaxy_dagster._testing import apply_partition_requests as apply_partition_requests

__all__ = ["SensorStep", "SensorTester", "apply_partition_requests"]
