"""The example end to end without the UI: `python -m example_project.demo` (or `make demo`).

It does what `dagster dev` does, headless, on a temporary Dagster instance and a temporary data
folder: ticks the increment sensor, applies its partition requests and executes each run it
asks for, then reports what every feature computed. Four steps: a first run, a rerun that
finds nothing, a code version bump of `normalized.pixels`, and three edited images.
"""

import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from example_project import digits
from example_project.definitions import build_defs
from example_project.features import feature_graph, with_code_version

SENSOR = "metaxy_increment_sensor"
JOB = "metaxy_job"
COUNTS = ("new", "stale", "orphaned")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
EDITED_IMAGES = ("img-0000", "img-0011", "img-1796")  # a zero, a one and an eight


@dataclass
class StepReport:
    """What one step did: per feature, samples new/stale/orphaned and rows written."""

    runs: int = 0
    skip_reason: str | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, asset: str, metadata: dict[str, dg.MetadataValue]) -> None:
        totals = self.counts[asset]
        for name in (*COUNTS, "rows_written"):
            value = metadata.get(f"metaxy/{name}")
            if value is not None:
                totals[name] = totals.get(name, 0) + int(value.value)


def _apply_partition_requests(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def sensor_step(defs: dg.Definitions, instance: dg.DagsterInstance) -> StepReport:
    """Tick the increment sensor once, like the daemon, and execute the runs it requests."""
    report = StepReport()
    with dg.build_sensor_context(
        instance=instance, resources=defs.resources, definitions=defs
    ) as context:
        result = defs.resolve_sensor_def(SENSOR)(context)
    if isinstance(result, dg.SkipReason):
        report.skip_reason = result.skip_message
        return report
    _apply_partition_requests(instance, result)
    job = defs.resolve_job_def(JOB)
    for request in result.run_requests or []:
        run = job.execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            asset_selection=list(request.asset_selection or []),
            tags={**request.tags, "dagster/run_key": request.run_key or ""},
            run_config=QUIET,
        )
        report.runs += 1
        for event in run.get_asset_materialization_events():
            materialization = event.materialization
            report.add(materialization.asset_key.to_user_string(), dict(materialization.metadata))
    return report


def _print_step(title: str, report: StepReport) -> None:
    print(f"\n== {title}")
    if report.skip_reason is not None:
        print(f"   sensor skipped: {report.skip_reason}")
        return
    print(f"   sensor launched {report.runs} run(s)")
    for key in feature_graph().topological_order():
        counts = report.counts.get(key.path)
        if counts is None:
            print(f"   {key.path:<14} not selected: nothing it reads changed")
            continue
        shown = ", ".join(f"{counts.get(n, 0)} {n}" for n in COUNTS)
        print(f"   {key.path:<14} {shown}  -> {counts.get('rows_written', 0)} rows written")


@contextmanager
def demo_instance() -> Iterator[tuple[dg.DagsterInstance, Path]]:
    """A temporary Dagster instance and data folder, removed afterwards."""
    # Dagster's event log syncs to disk on every event: use memory-backed /dev/shm if present.
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(
        prefix="metaxy-demo-", dir=shm if shm.is_dir() else None
    ) as root:
        home, data = Path(root, "dagster_home"), Path(root, "metaxy_data")
        home.mkdir()
        data.mkdir()
        instance = dg.DagsterInstance.local_temp(tempdir=str(home))
        try:
            yield instance, data
        finally:
            instance.dispose()


def run_demo() -> dict[str, StepReport]:
    """Run the four steps and print what each did; returns the reports by step name."""
    reports: dict[str, StepReport] = {}
    with demo_instance() as (instance, data):
        defs = build_defs(directory=data)
        reports["first run"] = sensor_step(defs, instance)
        _print_step("1. First run: every sample is new", reports["first run"])
        reports["rerun"] = sensor_step(defs, instance)
        _print_step("2. Rerun: nothing changed", reports["rerun"])

        bumped = with_code_version(feature_graph(), "normalized", "pixels", "2")
        defs = build_defs(bumped, directory=data)
        reports["code bump"] = sensor_step(defs, instance)
        _print_step("3. normalized.pixels code_version 1 -> 2", reports["code bump"])

        (data / digits.EDITS_FILE).write_text("\n".join(EDITED_IMAGES) + "\n")
        reports["edited images"] = sensor_step(defs, instance)
        _print_step(f"4. Edited images {', '.join(EDITED_IMAGES)}", reports["edited images"])
    return reports


if __name__ == "__main__":
    run_demo()
