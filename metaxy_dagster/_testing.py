"""Drive a code location's sensor like the Dagster daemon, on a temporary instance."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import dagster as dg

import metaxy_core as mx

_INCREMENT_SENSOR = "metaxy_increment_sensor"
# The counts the metaxy IO manager records per materialization (see SensorStep.feature_counts).
_COUNTS = ("new", "stale", "orphaned", "rows_written")

_PartitionRequest = dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest


def apply_partition_requests(
    instance: dg.DagsterInstance, requests: Iterable[_PartitionRequest]
) -> None:
    """Add and delete dynamic partitions as the daemon does after a sensor tick.

    Args:
        instance: the Dagster instance holding the partitions.
        requests: a sensor result's `dynamic_partitions_requests`.

    Example:
        >>> apply_partition_requests(instance, result.dynamic_partitions_requests)  # doctest: +SKIP
    """
    for request in requests:
        keys = list(request.partition_keys)
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, keys)
        else:
            for key in keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


@dataclass(frozen=True)
class SensorStep:
    """What one sensor tick did, and the runs executed for it (none after `tick`).

    Attributes:
        skip_reason: the tick's skip message, or None when it requested runs.
        run_requests: the runs the tick requested.
        partition_requests: the tick's dynamic partition requests (already applied).
        cursor: the sensor's cursor after the tick.
        runs: the executed runs, in request order.
    """

    skip_reason: str | None
    run_requests: tuple[dg.RunRequest, ...]
    partition_requests: tuple[_PartitionRequest, ...] = ()
    cursor: str | None = None
    runs: tuple[dg.ExecuteInProcessResult, ...] = ()

    @property
    def added_partitions(self) -> list[str]:
        """The partition keys the tick added."""
        return [
            key
            for request in self.partition_requests
            if isinstance(request, dg.AddDynamicPartitionsRequest)
            for key in request.partition_keys
        ]

    @property
    def deleted_partitions(self) -> list[str]:
        """The partition keys the tick deleted."""
        return [
            key
            for request in self.partition_requests
            if isinstance(request, dg.DeleteDynamicPartitionsRequest)
            for key in request.partition_keys
        ]

    @property
    def skipped(self) -> bool:
        """True when the tick requested no run."""
        return not self.run_requests

    @property
    def success(self) -> bool:
        """True when every executed run succeeded."""
        return all(run.success for run in self.runs)

    def materializations(self) -> list[dg.AssetMaterialization]:
        """Every asset materialization of the executed runs."""
        return [
            event.materialization
            for run in self.runs
            for event in run.get_asset_materialization_events()
        ]

    def feature_counts(self) -> dict[str, dict[str, int]]:
        """Per asset (user string), samples new, stale and orphaned and rows written, summed."""
        totals: dict[str, dict[str, int]] = {}
        for materialization in self.materializations():
            asset = totals.setdefault(materialization.asset_key.to_user_string(), {})
            for name in _COUNTS:
                value = materialization.metadata.get(f"metaxy/{name}")
                if value is not None:
                    asset[name] = asset.get(name, 0) + int(value.value)  # pyright: ignore
        return totals


class SensorTester:
    """Drives one sensor of a code location like the daemon: tick, partitions, runs, cursor.

    Args:
        definitions: the code location's definitions (e.g. from `build_definitions`).
        instance: a temporary Dagster instance, e.g. from `dg.instance_for_test()`.
        sensor: the sensor's name (default: the increment sensor of `build_definitions`).
        run_config: run config added to every executed run (e.g. quieter loggers).
        raise_on_error: re-raise a failing run's error (False: the step records the failure).

    Example:
        >>> with dg.instance_for_test() as instance:  # doctest: +SKIP
        ...     tester = SensorTester(defs, instance)
        ...     step = tester.step()
        ...     assert step.success and tester.step().skipped
    """

    def __init__(
        self,
        definitions: dg.Definitions,
        instance: dg.DagsterInstance,
        *,
        sensor: str = _INCREMENT_SENSOR,
        run_config: Mapping[str, Any] | None = None,
        raise_on_error: bool = True,
    ) -> None:
        if instance.is_ephemeral:
            raise mx.MetaxyError(
                "SensorTester needs an instance with storage, as sensors and the runs they "
                "launch share it: use dg.instance_for_test(), not DagsterInstance.ephemeral()."
            )
        self.instance = instance
        self.sensor_name = sensor
        self.run_config = dict(run_config or {})
        self.raise_on_error = raise_on_error
        self.cursor: str | None = None
        self.definitions = definitions
        self._sensor = definitions.resolve_sensor_def(sensor)

    def reload(self, definitions: dg.Definitions) -> None:
        """Swap in new definitions (a code change), keeping the cursor as the daemon does."""
        self._sensor = definitions.resolve_sensor_def(self.sensor_name)
        self.definitions = definitions

    def tick(self) -> SensorStep:
        """Evaluate the sensor once and apply its partition requests; run nothing."""
        # With an instance ref, run requests resolve against the partitions their own tick
        # adds, as in the daemon (without one, Dagster finds no partition store).
        with dg.build_sensor_context(
            instance=self.instance,
            instance_ref=self.instance.get_ref(),
            cursor=self.cursor,
            sensor_name=self.sensor_name,
            resources=self.definitions.resources,
            definitions=self.definitions,
        ) as context:
            data = self._sensor.evaluate_tick(context)
        self.cursor = data.cursor
        partition_requests = tuple(data.dynamic_partitions_requests or ())
        apply_partition_requests(self.instance, partition_requests)
        requests = tuple(data.run_requests or ())
        return SensorStep(
            skip_reason=None if requests else (data.skip_message or "no run requested"),
            run_requests=requests,
            partition_requests=partition_requests,
            cursor=data.cursor,
        )

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """Execute one run request in process, tagged like a run the daemon launches."""
        job_name = request.job_name or self._sensor.job_name
        tags = {**request.tags, "dagster/sensor_name": self.sensor_name}
        if request.run_key:
            tags["dagster/run_key"] = request.run_key
        return self.definitions.resolve_job_def(job_name).execute_in_process(
            run_config={**dict(request.run_config or {}), **self.run_config},
            instance=self.instance,
            partition_key=request.partition_key,
            asset_selection=list(request.asset_selection) if request.asset_selection else None,
            tags=tags,
            raise_on_error=self.raise_on_error,
        )

    def step(self) -> SensorStep:
        """Tick once and execute every run the tick requests."""
        tick = self.tick()
        return replace(tick, runs=tuple(self.run(request) for request in tick.run_requests))

    def settle(self, *, max_steps: int = 10) -> Sequence[SensorStep]:
        """Step until a tick requests nothing; returns every step, the skipping one last.

        Raises:
            MetaxyError: the sensor still requests runs after `max_steps` steps.
        """
        steps: list[SensorStep] = []
        for _ in range(max_steps):
            steps.append(self.step())
            if steps[-1].skipped:
                return steps
        raise mx.MetaxyError(
            f"Sensor {self.sensor_name} still requested runs after {max_steps} steps: "
            f"last requests {[r.run_key for r in steps[-1].run_requests]}."
        )
