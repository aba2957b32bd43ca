"""The example end to end without the UI: `python -m example_project.demo` (or `make demo`).

It does what `dagster dev` does, headless, on a temporary Dagster instance and a temporary data
folder: `metaxy_dagster.testing.SensorTester` ticks the increment sensor, applies its partition
requests and executes each run it asks for; the demo prints what every feature computed. Four
steps: a first run, a rerun that finds nothing, a code version bump of `normalized.pixels`, and
three edited images.
"""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from example_project import digits
from example_project.definitions import build_defs
from example_project.features import feature_graph, with_code_version
from metaxy_dagster.testing import SensorStep, SensorTester

COUNTS = ("new", "stale", "orphaned")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
EDITED_IMAGES = ("img-0000", "img-0011", "img-1796")  # a zero, a one and an eight


def _print_step(title: str, step: SensorStep) -> None:
    print(f"\n== {title}")
    if step.skipped:
        print(f"   sensor skipped: {step.skip_reason}")
        return
    print(f"   sensor launched {len(step.runs)} run(s)")
    counts_by_asset = step.feature_counts()
    for key in feature_graph().topological_order():
        counts = counts_by_asset.get(key.path)
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


def run_demo() -> dict[str, SensorStep]:
    """Run the four steps and print what each did; returns the steps by name."""
    steps: dict[str, SensorStep] = {}
    with demo_instance() as (instance, data):
        tester = SensorTester(build_defs(directory=data), instance, run_config=QUIET)
        steps["first run"] = tester.step()
        _print_step("1. First run: every sample is new", steps["first run"])
        steps["rerun"] = tester.step()
        _print_step("2. Rerun: nothing changed", steps["rerun"])

        bumped = with_code_version(feature_graph(), "normalized", "pixels", "2")
        tester.reload(build_defs(bumped, directory=data))
        steps["code bump"] = tester.step()
        _print_step("3. normalized.pixels code_version 1 -> 2", steps["code bump"])

        (data / digits.EDITS_FILE).write_text("\n".join(EDITED_IMAGES) + "\n")
        steps["edited images"] = tester.step()
        _print_step(f"4. Edited images {', '.join(EDITED_IMAGES)}", steps["edited images"])
    return steps


if __name__ == "__main__":
    run_demo()
