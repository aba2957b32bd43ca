"""Drive sensors like the daemon does, through `metaxy_dagster.testing`.

`tick` keeps one `SensorTester` per instance and sensor, so a sensor's cursor carries from
tick to tick as under the daemon; it returns the tick as a `SkipReason` or `SensorResult`.
"""

import weakref

import dagster as dg

from metaxy_dagster.testing import SensorTester

_testers: weakref.WeakKeyDictionary[dg.DagsterInstance, dict[str, SensorTester]] = (
    weakref.WeakKeyDictionary()
)


def tester(defs: dg.Definitions, name: str, instance: dg.DagsterInstance) -> SensorTester:
    """The instance's tester of sensor `name`, reloaded with `defs` (its cursor kept)."""
    by_name = _testers.setdefault(instance, {})
    if name in by_name:
        by_name[name].reload(defs)
    else:
        by_name[name] = SensorTester(defs, instance, sensor=name)
    return by_name[name]


def tick(defs: dg.Definitions, name: str, instance: dg.DagsterInstance):
    """Evaluate sensor `name` with a real context and apply its partition requests."""
    step = tester(defs, name, instance).tick()
    if step.skipped and not step.partition_requests:
        return dg.SkipReason(step.skip_reason)
    return dg.SensorResult(
        run_requests=list(step.run_requests),
        dynamic_partitions_requests=list(step.partition_requests),
    )


def execute(
    defs: dg.Definitions,
    request: dg.RunRequest,
    instance: dg.DagsterInstance,
    *,
    raise_on_error: bool = True,
):
    """Run one run request of the increment sensor in process."""
    runner = tester(defs, "metaxy_increment_sensor", instance)
    runner.raise_on_error = raise_on_error
    return runner.run(request)


def requests(result) -> list[dg.RunRequest]:
    return list(result.run_requests or []) if isinstance(result, dg.SensorResult) else []
